// SPDX-License-Identifier: Apache-2.0
// cvm-attest: CvmRegistry, owners publish golden measurements, anyone proves a CVM on chain
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ICvmRegistry} from "./interfaces/ICvmRegistry.sol";
import {IEcdsaVerifier} from "./interfaces/IEcdsaVerifier.sol";
import {ISnpVerifier} from "./interfaces/ISnpVerifier.sol";
import {AzureBinding} from "./libraries/AzureBinding.sol";
import {TpmQuote} from "./libraries/TpmQuote.sol";

/**
 * @dev See {ICvmRegistry}. PROTOCOL.md, "On-chain model", is the design; docs/formats.md defines the golden id and
 * the quote's extraData.
 *
 * The SEV-SNP verification itself (SHA-384, ECDSA P-384, RSASSA-PSS, X.509 and report parsing) runs in the stateless
 * {ISnpVerifier} fixed at construction: together they would not fit one contract under EIP-170. The verifier only
 * parses and checks signatures; every decision (what is cached, what matches, which error) is made here.
 *
 * Storage is laid out for the two hot paths: {refreshCvm} reads one attestation slot and the revocation block and
 * writes the attestation slot; {isAttested} reads two attestation slots, one golden slot and the revocation block.
 * Revocation reaches attested CVMs through `_lastRevocationBlock`: an attestation whose last nonce block is not newer
 * than the last revocation or unpinning walks its leaf's chain again (three certificate slots and the root's pin);
 * every other read skips the walk, since nothing above its leaf can have changed since it was verified.
 *
 * IMPORTANT: the owner decides what is trusted (root keys, golden measurements); a compromised owner key can attest
 * anything. Use a multisig or a timelock as the owner of a production registry.
 */
contract CvmRegistry is ICvmRegistry, Ownable2Step {
    /// @dev docs/formats.md, "Canonical id".
    bytes32 public constant GOLDEN_TYPEHASH = keccak256(
        "CvmGolden(bytes measurement,uint8 binding,uint8 vmpl,uint8 products,uint8 signers,bool debugAllowed,"
        "bool migrateMaAllowed,bool smtAllowed,uint8 minAbiMajor,uint8 minAbiMinor,uint8 minBootloader,uint8 minTee,"
        "uint8 minSnp,uint8 minMicrocode,uint8 minFmc,uint32 pcrMask,bytes32[] pcrValues,uint64 lifetime)"
    );
    /// @dev docs/formats.md, "Canonical id": a golden measurement with report checks (EIP-712 nested structs).
    bytes32 public constant GOLDEN_CHECKS_TYPEHASH = keccak256(
        "CvmGoldenWithChecks(CvmGolden golden,CvmReportChecks checks)"
        "CvmGolden(bytes measurement,uint8 binding,uint8 vmpl,uint8 products,uint8 signers,bool debugAllowed,"
        "bool migrateMaAllowed,bool smtAllowed,uint8 minAbiMajor,uint8 minAbiMinor,uint8 minBootloader,uint8 minTee,"
        "uint8 minSnp,uint8 minMicrocode,uint8 minFmc,uint32 pcrMask,bytes32[] pcrValues,uint64 lifetime)"
        "CvmReportChecks(bytes reportData,bytes hostData,bytes idKeyDigest,bytes authorKeyDigest,bytes familyId,"
        "bytes imageId,uint32 minGuestSvn,bytes[] chipIds,uint64 platformInfoMask,uint64 platformInfo,"
        "uint8 minFirmwareMajor,uint8 minFirmwareMinor,uint8 minFirmwareBuild)"
    );
    /// @dev docs/formats.md, "quote extraData, on chain".
    bytes32 public constant QUOTE_TYPEHASH = keccak256("cvm-attest.quote.v1");
    /// @dev docs/formats.md, "golden consent".
    bytes32 public constant CONSENT_TYPEHASH = keccak256("cvm-attest.consent.v1");
    /// @dev docs/formats.md, "sealing key".
    bytes32 public constant SEALING_KEY_TYPEHASH = keccak256("cvm-attest.sealing-key.v1");
    /// @dev docs/formats.md, "SVSM activation statement".
    bytes32 public constant ACTIVATION_TYPEHASH = keccak256("cvm-attest.svsm-activation.v1");

    uint8 internal constant BINDING_DIRECT = 0;
    uint8 internal constant BINDING_AZURE = 1;
    uint8 internal constant BINDING_SVSM = 2;
    uint256 internal constant SVSM_NONCE_BYTES = 64;
    uint8 internal constant TURIN = 4;
    uint8 internal constant VCEK = 1;
    uint8 internal constant VLEK = 2;
    /// @dev Bytes of a VCEK's hwID: the whole CHIP_ID, its first 8 bytes on Turin (offchain.trust.kds.hwid_for).
    uint256 internal constant HWID_BYTES = 64;
    uint256 internal constant TURIN_HWID_BYTES = 8;
    uint8 internal constant ALL_PRODUCTS = 7;
    uint8 internal constant ALL_SIGNERS = 3;
    uint256 internal constant MEASUREMENT_BYTES = 48;

    enum GoldenStatus {
        None,
        Active,
        Revoked
    }

    /// @dev A published golden measurement; slot 1 holds everything {refreshCvm} and {isAttested} read.
    struct GoldenRecord {
        bytes32 measurementHash;
        GoldenStatus status;
        uint64 lifetime;
        uint8 binding;
        uint8 vmpl;
        uint8 products;
        uint8 signers;
        bool migrateMaAllowed;
        bool smtAllowed;
        uint8 minAbiMajor;
        uint8 minAbiMinor;
        uint8 minBootloader;
        uint8 minTee;
        uint8 minSnp;
        uint8 minMicrocode;
        uint8 minFmc;
        uint32 pcrMask;
        bytes32[] pcrValues;
        /// @dev Where its ABI-encoded {ISnpVerifier-ReportChecks} are stored as code (zero: none), as {_storeTable}.
        address checks;
    }

    /// @dev A cached certificate. `publicKey`/`exponent` are an ARK's, ASK's or ASVK's RSA key; a VCEK/VLEK keeps its
    /// P-384 key as a precomputed `table` instead, and its SPLs and hwID. The validity is intersected with the
    /// issuer's.
    struct CachedCert {
        CertKind kind;
        bool revoked;
        uint8 product;
        uint64 notBefore;
        uint64 notAfter;
        uint8 bootloader;
        uint8 tee;
        uint8 snp;
        uint8 microcode;
        uint8 fmc;
        uint8 hwIdLength;
        bytes32 issuer;
        bytes32 subjectHash;
        bytes32 keyHash;
        bytes32 hwIdHash;
        /// @dev A leaf's P-384 precomputation table, stored as this contract's code (see {_storeTable}).
        address table;
        bytes publicKey;
        bytes exponent;
    }

    /// @dev What the policy and binding checks need from a verified report.
    struct ReportFacts {
        uint8 product;
        uint8 signer;
        bytes32 reportHash;
        bytes32 reportData0;
        bytes32 reportData1;
        bytes32 measurementHash;
        uint64 policy;
        uint32 vmpl;
        uint8 bootloader;
        uint8 tee;
        uint8 snp;
        uint8 microcode;
        uint8 fmc;
    }

    /// @dev The stateless SEV-SNP verifier this registry trusts (fixed at construction).
    ISnpVerifier public immutable snpVerifier;
    /// @dev Its elliptic-curve verifier, which also checks P-256 AK signatures (OpenZeppelin's P256 with its Solidity
    /// fallback does not fit in this contract under EIP-170).
    IEcdsaVerifier public immutable ecdsaVerifier;

    mapping(bytes32 keyHash => uint8 product) private _rootProduct;
    mapping(bytes32 id => CachedCert) private _certs;
    mapping(bytes32 id => GoldenRecord) private _goldens;
    mapping(address cvm => Attestation) private _attestations;
    mapping(address cvm => bytes32 sealingKey) private _sealingKeys;
    mapping(address activator => bool allowed) private _activators;
    /// @dev Block number of the last {revokeCertificate} or {unpinRoot}.
    uint40 private _lastRevocationBlock;

    /// @param initialOwner Pins roots and publishes golden measurements; transfer with {transferOwnership} +
    /// {acceptOwnership}.
    /// @param verifier The deployed {ISnpVerifier} (contracts/SnpVerifier.sol).
    constructor(address initialOwner, ISnpVerifier verifier) Ownable(initialOwner) {
        if (address(verifier) == address(0)) revert RegistryZeroAddress();
        snpVerifier = verifier;
        ecdsaVerifier = verifier.ecdsa();
    }

    // ----- owner ------------------------------------------------------------------------------------------------

    /// @inheritdoc ICvmRegistry
    function pinRoot(uint8 product, bytes32 keyHash) external onlyOwner {
        if (product != 1 && product != 2 && product != 4) revert RegistryProductInvalid(product);
        if (_rootProduct[keyHash] != 0) revert RegistryRootAlreadyPinned(keyHash);
        _rootProduct[keyHash] = product;
        emit RootPinned(product, keyHash);
    }

    /// @inheritdoc ICvmRegistry
    function unpinRoot(bytes32 keyHash) external onlyOwner {
        if (_rootProduct[keyHash] == 0) revert RegistryRootNotPinned(keyHash);
        delete _rootProduct[keyHash];
        _lastRevocationBlock = uint40(block.number);
        emit RootUnpinned(keyHash);
    }

    /// @inheritdoc ICvmRegistry
    function revokeCertificate(bytes32 id) external onlyOwner {
        CachedCert storage cert = _certs[id];
        if (cert.kind == CertKind.None) revert RegistryCertificateUnknown(id);
        if (cert.revoked) revert RegistryCertificateRevoked(id);
        cert.revoked = true;
        _lastRevocationBlock = uint40(block.number);
        emit CertificateRevoked(id);
    }

    /// @inheritdoc ICvmRegistry
    function publishGolden(Golden calldata golden) external onlyOwner returns (bytes32 id) {
        id = _publishGolden(golden, "");
    }

    /// @inheritdoc ICvmRegistry
    function publishGoldenWithChecks(Golden calldata golden, bytes calldata checks)
        external
        onlyOwner
        returns (bytes32 id)
    {
        id = _publishGolden(golden, checks);
    }

    /// @dev Publishes `golden`, with `checks` (ABI-encoded {ISnpVerifier-ReportChecks}) unless they are empty.
    function _publishGolden(Golden calldata golden, bytes memory checks) private returns (bytes32 id) {
        _validateGolden(golden);
        id = _goldenId(golden);
        if (checks.length != 0) id = _withChecks(id, checks);
        GoldenRecord storage g = _goldens[id];
        if (g.status != GoldenStatus.None) revert RegistryGoldenExists(id);
        if (checks.length != 0) g.checks = _storeTable(checks);
        g.measurementHash = keccak256(golden.measurement);
        g.status = GoldenStatus.Active;
        g.lifetime = golden.lifetime;
        g.binding = golden.binding;
        g.vmpl = golden.vmpl;
        g.products = golden.products;
        g.signers = golden.signers;
        g.migrateMaAllowed = golden.migrateMaAllowed;
        g.smtAllowed = golden.smtAllowed;
        g.minAbiMajor = golden.minAbiMajor;
        g.minAbiMinor = golden.minAbiMinor;
        g.minBootloader = golden.minBootloader;
        g.minTee = golden.minTee;
        g.minSnp = golden.minSnp;
        g.minMicrocode = golden.minMicrocode;
        g.minFmc = golden.minFmc;
        g.pcrMask = golden.pcrMask;
        g.pcrValues = golden.pcrValues;
        emit GoldenPublished(id, golden.measurement, golden.lifetime);
    }

    /// @inheritdoc ICvmRegistry
    function revokeGolden(bytes32 id) external onlyOwner {
        GoldenRecord storage g = _goldens[id];
        if (g.status == GoldenStatus.None) revert RegistryGoldenNotFound(id);
        if (g.status == GoldenStatus.Revoked) revert RegistryGoldenRevoked(id);
        g.status = GoldenStatus.Revoked;
        emit GoldenRevoked(id);
    }

    /// @inheritdoc ICvmRegistry
    function setActivator(address activator, bool allowed) external onlyOwner {
        if (activator == address(0)) revert RegistryZeroAddress();
        _activators[activator] = allowed;
        emit ActivatorSet(activator, allowed);
    }

    // ----- anyone -----------------------------------------------------------------------------------------------

    /// @inheritdoc ICvmRegistry
    function registerCertificate(bytes calldata der, bytes32 issuer) external returns (bytes32 id) {
        id = keccak256(der);
        CachedCert storage cert = _certs[id];
        if (cert.kind != CertKind.None) {
            if (cert.revoked) revert RegistryCertificateRevoked(id);
            return id;
        }
        if (issuer == bytes32(0)) {
            _cacheRoot(cert, id, snpVerifier.verifyCertificate(der, "", ""));
        } else {
            _requireChainActive(issuer);
            CachedCert storage parent = _certs[issuer];
            CertKind parentKind = parent.kind;
            if (parentKind != CertKind.Ark && parentKind != CertKind.Ask && parentKind != CertKind.Asvk) {
                revert RegistryWrongIssuer(issuer);
            }
            ISnpVerifier.Certificate memory c = snpVerifier.verifyCertificate(der, parent.publicKey, parent.exponent);
            if (c.issuerHash != parent.subjectHash) revert RegistryWrongIssuer(issuer);
            if (!c.signatureValid) {
                if (parentKind == CertKind.Ark) revert RegistryIntermediateSignatureInvalid(id);
                revert RegistryLeafSignatureInvalid(id);
            }
            _cacheUnder(cert, c, issuer, parent);
        }
        emit CertificateRegistered(id, issuer, cert.kind, cert.product);
    }

    /// @inheritdoc ICvmRegistry
    function registerCvm(
        bytes32 goldenId_,
        address cvm,
        uint256 blockNumber,
        Evidence calldata evidence,
        bytes calldata consent
    ) external {
        if (cvm == address(0)) revert RegistryZeroAddress();
        _requireConsent(cvm, goldenId_, consent);
        Attestation storage a = _attestations[cvm];
        bytes32 extraData = _freshExtraData(cvm, blockNumber, a.lastBlock);
        GoldenRecord storage g = _activeGolden(goldenId_);
        (Verdict memory v, uint32 pcrMask, bytes32 pcrDigest_) =
            _verifyEvidence(goldenId_, g, abi.encodePacked(extraData), evidence);
        _record(a, cvm, goldenId_, g, evidence.leaf, v, _quoteKey(v.akHash, pcrMask, pcrDigest_), blockNumber);
    }

    /// @inheritdoc ICvmRegistry
    function registerCvmSvsm(
        bytes32 goldenId_,
        address cvm,
        uint256 blockNumber,
        SvsmEvidence calldata evidence,
        uint64 activationExpiry,
        bytes calldata activationSignature,
        bytes calldata consent
    ) external {
        if (cvm == address(0)) revert RegistryZeroAddress();
        _requireConsent(cvm, goldenId_, consent);
        Attestation storage a = _attestations[cvm];
        bytes32 extraData = _freshExtraData(cvm, blockNumber, a.lastBlock);
        GoldenRecord storage g = _activeGolden(goldenId_);
        if (g.binding != BINDING_SVSM) revert RegistryBindingNotAllowed(BINDING_SVSM);
        ReportFacts memory facts = _verifyReportAndLeaf(evidence.report, evidence.leaf);
        // The SVSM's own report: only VMPL0 software (the SVSM, not the guest OS) can have asked for it.
        if (facts.vmpl != 0) revert RegistryVmplMismatch(facts.vmpl);
        if (evidence.svsmNonce.length != SVSM_NONCE_BYTES) revert RegistryReportDataMismatch();
        (bytes32 hi, bytes32 lo) = snpVerifier.sha512(bytes.concat(evidence.svsmNonce, evidence.manifest));
        if (facts.reportData0 != hi || facts.reportData1 != lo) revert RegistryReportDataMismatch();
        _requireActivation(
            sha256(evidence.manifest), sha256(evidence.akPublic), activationExpiry, activationSignature
        );
        TpmQuote.PublicKey memory ak = TpmQuote.parsePublic(evidence.akPublic);
        TpmQuote.Quote memory q =
            _verifyQuote(evidence.attest, evidence.signature, evidence.pcrs, ak, abi.encodePacked(extraData));
        _checkReportPolicy(g, facts, evidence.report);
        _checkPinnedPcrs(g, q.pcrMask, evidence.pcrs);
        Verdict memory v = Verdict(goldenId_, facts.product, facts.signer, facts.reportHash, keccak256(TpmQuote.keyBytes(ak)));
        _record(a, cvm, goldenId_, g, evidence.leaf, v, _quoteKey(v.akHash, q.pcrMask, q.pcrDigest), blockNumber);
    }

    /// @inheritdoc ICvmRegistry
    function refreshCvm(
        address cvm,
        uint256 blockNumber,
        bytes calldata akKey,
        bytes calldata attest,
        bytes calldata signature
    ) external {
        // The whole transaction must stay under 80,000 gas, of which the modexp precompile takes 32,768 for an
        // RSA-2048 AK: one attestation slot is read and written once, and the revocation block read.
        Attestation storage a = _attestations[cvm];
        (bytes16 quoteKey, uint40 expiry, uint40 lastBlock, uint32 lifetime, uint16 leafEnd) =
            (a.quoteKey, a.expiry, a.lastBlock, a.lifetime, a.leafEnd);
        if (expiry <= block.timestamp) {
            if (expiry == 0) revert RegistryCvmNotRegistered(cvm);
            if (expiry == uint40(leafEnd) << 16) revert RegistryCertificateExpired(a.leaf, _certs[a.leaf].notAfter);
            revert RegistryAttestationExpired(cvm, expiry);
        }
        if (_lastRevocationBlock >= lastBlock && !_chainActive(a.leaf)) revert RegistryCertificateRevoked(a.leaf);
        (bytes32 quoted, bool isWord, uint32 pcrMask, bytes32 pcrDigest_) = TpmQuote.quoteNonce(attest);
        bytes32 akHash = keccak256(akKey);
        if (_quoteKey(akHash, pcrMask, pcrDigest_) != quoteKey) {
            if (akHash != a.akHash) revert RegistryAkMismatch();
            revert RegistryPcrsChanged();
        }
        bytes32 extraData = _freshExtraData(cvm, blockNumber, lastBlock);
        if (!TpmQuote.verifyRawWith(sha256(attest), akKey, signature, _p256)) revert RegistryQuoteSignatureInvalid();
        if (!isWord || quoted != extraData) revert RegistryQuoteNonceMismatch();
        // An unexpired attestation's leaf is valid past now (expiry <= leafEnd), so the new expiry is in the future.
        expiry = _expiry(lifetime, leafEnd);
        _writeSlot3(a, quoteKey, expiry, uint40(blockNumber), lifetime, leafEnd);
        emit CvmRefreshed(cvm, expiry);
    }

    // ----- views ------------------------------------------------------------------------------------------------

    /// @inheritdoc ICvmRegistry
    function verifyEvidence(bytes32 goldenId_, bytes calldata expectedExtraData, Evidence calldata evidence)
        external
        view
        returns (Verdict memory verdict)
    {
        GoldenRecord storage g = goldenId_ == bytes32(0) ? _goldens[bytes32(0)] : _activeGolden(goldenId_);
        (verdict,,) = _verifyEvidence(goldenId_, g, expectedExtraData, evidence);
    }

    /// @inheritdoc ICvmRegistry
    function verifyReport(bytes calldata report, bytes32 leaf, bytes32 goldenId_, bytes calldata runtimeData)
        external
        view
        returns (Verdict memory verdict)
    {
        ReportFacts memory facts = _verifyReportAndLeaf(report, leaf);
        if (runtimeData.length != 0) _checkAzureReportData(facts, runtimeData);
        if (goldenId_ != bytes32(0)) {
            GoldenRecord storage g = _activeGolden(goldenId_);
            _checkReportPolicy(g, facts, report);
            if (runtimeData.length != 0 && g.binding != BINDING_AZURE) revert RegistryBindingNotAllowed(BINDING_AZURE);
            // A bare report proves no PCR value: every pinned PCR is missing (fail closed, like offchain).
            if (g.pcrMask != 0) revert RegistryPcrMissing(_lowestBit(g.pcrMask));
        }
        verdict = Verdict(goldenId_, facts.product, facts.signer, facts.reportHash, bytes32(0));
    }

    /// @inheritdoc ICvmRegistry
    function isAttested(address cvm) external view returns (bool) {
        return attestationStatus(cvm, bytes32(0)) == AttestationStatus.Attested;
    }

    /// @inheritdoc ICvmRegistry
    function isAttestedFor(address cvm, bytes32 goldenId_) external view returns (bool) {
        return goldenId_ != bytes32(0) && attestationStatus(cvm, goldenId_) == AttestationStatus.Attested;
    }

    /// @inheritdoc ICvmRegistry
    function attestationStatus(address cvm, bytes32 goldenId_) public view returns (AttestationStatus) {
        Attestation storage a = _attestations[cvm];
        (uint40 expiry, uint40 lastBlock, uint16 leafEnd) = (a.expiry, a.lastBlock, a.leafEnd);
        if (expiry <= block.timestamp) {
            if (expiry == 0) return AttestationStatus.NotRegistered;
            return expiry == uint40(leafEnd) << 16 ? AttestationStatus.LeafExpired : AttestationStatus.Expired;
        }
        bytes32 attestedUnder = a.goldenId;
        if (goldenId_ != bytes32(0) && attestedUnder != goldenId_) return AttestationStatus.OtherGolden;
        if (_goldens[attestedUnder].status != GoldenStatus.Active) return AttestationStatus.GoldenRevoked;
        if (_lastRevocationBlock >= lastBlock && !_chainActive(a.leaf)) return AttestationStatus.ChainRevoked;
        return AttestationStatus.Attested;
    }

    /// @inheritdoc ICvmRegistry
    function attestationOf(address cvm) external view returns (Attestation memory, AttestationStatus) {
        return (_attestations[cvm], attestationStatus(cvm, bytes32(0)));
    }

    /// @inheritdoc ICvmRegistry
    function goldenId(Golden calldata golden) external pure returns (bytes32) {
        return _goldenId(golden);
    }

    /// @inheritdoc ICvmRegistry
    function goldenIdWithChecks(Golden calldata golden, bytes calldata checks) external view returns (bytes32) {
        return _withChecks(_goldenId(golden), checks);
    }

    /// @inheritdoc ICvmRegistry
    function reportChecksOf(bytes32 id) external view returns (bytes memory checks) {
        address stored = _goldens[id].checks;
        if (stored != address(0)) checks = _readStored(stored);
    }

    /// @inheritdoc ICvmRegistry
    function publishSealingKey(address cvm, bytes32 sealingKey, bytes calldata signature) external {
        AttestationStatus status = attestationStatus(cvm, bytes32(0));
        if (status != AttestationStatus.Attested) revert RegistryCvmNotAttested(cvm, status);
        bytes32 digest = keccak256(abi.encode(SEALING_KEY_TYPEHASH, block.chainid, address(this), cvm, sealingKey));
        if (sealingKey == bytes32(0) || ecdsaVerifier.recoverSecp256k1(digest, signature) != cvm) {
            revert RegistrySealingKeyInvalid(cvm);
        }
        _sealingKeys[cvm] = sealingKey;
        emit CvmSealingKeyPublished(cvm, sealingKey);
    }

    /// @inheritdoc ICvmRegistry
    function sealingKeyOf(address cvm) external view returns (bytes32, AttestationStatus) {
        return (_sealingKeys[cvm], attestationStatus(cvm, bytes32(0)));
    }

    /// @inheritdoc ICvmRegistry
    function isActivator(address activator) external view returns (bool) {
        return _activators[activator];
    }

    /// @inheritdoc ICvmRegistry
    function goldenOf(bytes32 id) external view returns (GoldenInfo memory) {
        GoldenRecord storage g = _goldens[id];
        GoldenStatus status = g.status;
        bool published = status != GoldenStatus.None;
        return GoldenInfo(published, status == GoldenStatus.Revoked, g.lifetime, g.binding, g.pcrMask);
    }

    /// @inheritdoc ICvmRegistry
    function certificateOf(bytes32 id) external view returns (CertificateInfo memory) {
        CachedCert storage c = _certs[id];
        return CertificateInfo(c.kind, c.revoked, c.product, c.notBefore, c.notAfter, c.issuer);
    }

    /// @inheritdoc ICvmRegistry
    function rootProduct(bytes32 keyHash) external view returns (uint8) {
        return _rootProduct[keyHash];
    }

    /// @inheritdoc ICvmRegistry
    function quoteExtraData(address cvm, uint256 blockNumber) external view returns (bytes32) {
        bytes32 blockHash = blockhash(blockNumber);
        if (blockHash == bytes32(0)) return bytes32(0);
        return _extraData(cvm, blockHash);
    }

    // ----- verification -----------------------------------------------------------------------------------------

    /// @dev Every check of {registerCvm} but freshness, in the off-chain verifier's order: certificate chain and
    /// report, AK binding, quote, then the golden policy (with the pinned PCRs).
    function _verifyEvidence(
        bytes32 goldenId_,
        GoldenRecord storage g,
        bytes memory expectedExtraData,
        Evidence calldata ev
    ) private view returns (Verdict memory v, uint32 pcrMask, bytes32 pcrDigest_) {
        ReportFacts memory facts = _verifyReportAndLeaf(ev.report, ev.leaf);
        TpmQuote.PublicKey memory ak = TpmQuote.parsePublic(ev.akPublic);
        if (ev.binding == BINDING_DIRECT) {
            if (facts.reportData0 != sha256(ev.akPublic) || facts.reportData1 != bytes32(0)) {
                revert RegistryReportDataMismatch();
            }
        } else if (ev.binding == BINDING_AZURE) {
            _checkAzureReportData(facts, ev.runtimeData);
            if (ak.keyType != TpmQuote.TPM_ALG_RSA) revert RegistryAkMismatch();
            (bool shapeOk, bool keyMatches) =
                AzureBinding.checkAkModulus(ev.runtimeData, ev.akKidOffset, ev.akModulusOffset, ak.modulus);
            if (!shapeOk) revert RegistryAkJwkOffsets(ev.akKidOffset, ev.akModulusOffset);
            if (!keyMatches || ak.exponent != 65537) revert RegistryAkMismatch();
        } else {
            revert RegistryBindingNotAllowed(ev.binding);
        }
        TpmQuote.Quote memory q = _verifyQuote(ev.attest, ev.signature, ev.pcrs, ak, expectedExtraData);
        if (goldenId_ != bytes32(0)) {
            _checkReportPolicy(g, facts, ev.report);
            if (ev.binding != g.binding) revert RegistryBindingNotAllowed(ev.binding);
            _checkPinnedPcrs(g, q.pcrMask, ev.pcrs);
        }
        v = Verdict(goldenId_, facts.product, facts.signer, facts.reportHash, keccak256(TpmQuote.keyBytes(ak)));
        return (v, q.pcrMask, q.pcrDigest);
    }

    /// @dev The cached leaf's chain is active and valid now, and the report is its, signed by it. Checked in the
    /// off-chain verifier's order (offchain/verify/report.py): signing-key kind, hwID, REPORTED_TCB against the leaf's
    /// SPLs, CPUID product, signature.
    function _verifyReportAndLeaf(bytes calldata report, bytes32 leafId) private view returns (ReportFacts memory f) {
        CachedCert storage leaf = _certs[leafId];
        CertKind kind = leaf.kind;
        if (kind == CertKind.None) revert RegistryCertificateUnknown(leafId);
        if (kind != CertKind.Vcek && kind != CertKind.Vlek) revert RegistryNotALeaf(leafId);
        _requireChainActive(leafId);
        if (block.timestamp < leaf.notBefore) revert RegistryCertificateNotYetValid(leafId, leaf.notBefore);
        if (block.timestamp > leaf.notAfter) revert RegistryCertificateExpired(leafId, leaf.notAfter);
        uint8 product = leaf.product;
        ISnpVerifier.Report memory r = snpVerifier.verifyReport(report, product, leaf.hwIdLength, leaf.table);
        uint8 signer = kind == CertKind.Vcek ? VCEK : VLEK;
        if ((r.signingKey == 0 ? VCEK : VLEK) != signer) revert RegistrySignerMismatch();
        if (signer == VCEK) {
            uint256 expected = product == TURIN ? TURIN_HWID_BYTES : HWID_BYTES;
            if (leaf.hwIdLength != expected || r.chipIdHash != leaf.hwIdHash) revert RegistryHwIdMismatch();
        }
        if (
            r.bootloader != leaf.bootloader || r.tee != leaf.tee || r.snp != leaf.snp || r.microcode != leaf.microcode
                || r.fmc != leaf.fmc
        ) revert RegistryTcbMismatch();
        if (r.productHint != 0 && r.productHint != product) revert RegistryProductMismatch(r.productHint, product);
        if (!r.signatureValid) revert RegistryReportSignatureInvalid();
        f = ReportFacts({
            product: product,
            signer: signer,
            reportHash: r.reportHash,
            reportData0: r.reportData0,
            reportData1: r.reportData1,
            measurementHash: r.measurementHash,
            policy: r.policy,
            vmpl: r.vmpl,
            bootloader: r.bootloader,
            tee: r.tee,
            snp: r.snp,
            microcode: r.microcode,
            fmc: r.fmc
        });
    }

    /// @dev Azure: REPORT_DATA == SHA-256(runtime data) || 32 zero bytes.
    function _checkAzureReportData(ReportFacts memory facts, bytes calldata runtimeData) private pure {
        if (facts.reportData0 != sha256(runtimeData)) revert RegistryRuntimeDataMismatch();
        if (facts.reportData1 != bytes32(0)) revert RegistryReportDataMismatch();
    }

    /// @dev The quote: structure, signature by `ak`, extraData, PCR values against the selection and the digest.
    function _verifyQuote(
        bytes calldata attest,
        bytes calldata signature,
        bytes32[] calldata pcrs,
        TpmQuote.PublicKey memory ak,
        bytes memory expectedExtraData
    ) private view returns (TpmQuote.Quote memory q) {
        q = TpmQuote.parseQuote(attest);
        if (!TpmQuote.verifyWith(sha256(attest), ak, TpmQuote.parseSignature(signature), _p256)) {
            revert RegistryQuoteSignatureInvalid();
        }
        if (keccak256(q.extraData) != keccak256(expectedExtraData)) revert RegistryQuoteNonceMismatch();
        uint256 selected = _popcount(q.pcrMask);
        if (pcrs.length != selected) revert RegistryPcrCount(pcrs.length, selected);
        if (TpmQuote.pcrDigest(pcrs) != q.pcrDigest) revert RegistryPcrDigestMismatch();
    }

    /// @dev The activation statement (docs/formats.md, "SVSM activation statement") for `ekName` and `akName` is
    /// unexpired and signed by an activator the owner named.
    function _requireActivation(bytes32 ekName, bytes32 akName, uint64 expiry, bytes calldata signature)
        private
        view
    {
        if (expiry <= block.timestamp) revert RegistryActivationExpired(expiry);
        bytes32 digest = keccak256(abi.encode(ACTIVATION_TYPEHASH, block.chainid, address(this), ekName, akName, expiry));
        address signer = ecdsaVerifier.recoverSecp256k1(digest, signature);
        if (!_activators[signer]) revert RegistryActivatorUnknown(signer);
    }

    /// @dev The golden rules on the report, in docs/formats.md order (offchain.policy.check reports the same). Guest
    /// POLICY bits (ABI spec, "Guest Policy"): ABI_MINOR 0-7, ABI_MAJOR 8-15, SMT 16, MIGRATE_MA 18, DEBUG 19.
    function _checkReportPolicy(GoldenRecord storage g, ReportFacts memory f, bytes calldata report) private view {
        uint64 policy = f.policy;
        uint8 abiMajor = uint8(policy >> 8);
        uint8 abiMinor = uint8(policy);
        if (f.measurementHash != g.measurementHash) revert RegistryMeasurementMismatch();
        if (policy & (1 << 19) != 0) revert RegistryDebugAllowed();
        if (policy & (1 << 18) != 0 && !g.migrateMaAllowed) revert RegistryMigrateMaAllowed();
        if (policy & (1 << 16) != 0 && !g.smtAllowed) revert RegistrySmtNotAllowed();
        if (abiMajor < g.minAbiMajor || (abiMajor == g.minAbiMajor && abiMinor < g.minAbiMinor)) {
            revert RegistryAbiTooOld(abiMajor, abiMinor);
        }
        if (f.vmpl != g.vmpl) revert RegistryVmplMismatch(f.vmpl);
        if (f.bootloader < g.minBootloader) revert RegistryTcbTooLow(1);
        if (f.tee < g.minTee) revert RegistryTcbTooLow(2);
        if (f.snp < g.minSnp) revert RegistryTcbTooLow(3);
        if (f.microcode < g.minMicrocode) revert RegistryTcbTooLow(4);
        if (f.product == TURIN && f.fmc < g.minFmc) revert RegistryTcbTooLow(5);
        if (g.products & f.product == 0) revert RegistryProductNotAllowed(f.product);
        if (g.signers & f.signer == 0) revert RegistrySignerNotAllowed(f.signer);
        address checks = g.checks;
        if (checks != address(0)) {
            uint8 failed = snpVerifier.checkReport(report, _readStored(checks));
            if (failed != 0) revert RegistryReportCheckFailed(failed);
        }
    }

    /// @dev Every pinned PCR is in the quote's selection (`mask`, values in ascending order) with its golden value.
    function _checkPinnedPcrs(GoldenRecord storage g, uint32 mask, bytes32[] calldata values) private view {
        uint32 pinned = g.pcrMask;
        if (pinned == 0) return;
        uint256 pinnedIndex;
        uint256 valueIndex;
        for (uint8 pcr = 0; pcr < TpmQuote.PCR_COUNT; ++pcr) {
            uint32 bit = uint32(1) << pcr;
            bool isPinned = pinned & bit != 0;
            bool isQuoted = mask & bit != 0;
            if (isPinned) {
                if (!isQuoted) revert RegistryPcrMissing(pcr);
                if (values[valueIndex] != g.pcrValues[pinnedIndex]) revert RegistryPcrMismatch(pcr);
                ++pinnedIndex;
            }
            if (isQuoted) ++valueIndex;
        }
    }

    // ----- helpers ----------------------------------------------------------------------------------------------

    /// @dev P-256 ECDSA through {ecdsaVerifier} (for {TpmQuote-verifyWith}; `s` is already low).
    function _p256(bytes32 digest, bytes32 r, bytes32 s, bytes32 x, bytes32 y) private view returns (bool) {
        return ecdsaVerifier.verifyP256(digest, r, s, x, y);
    }

    /// @dev The extraData for a nonce from block `blockNumber`: the block must be one of the last 256 and newer
    /// than `lastBlock`, the last accepted for this CVM.
    function _freshExtraData(address cvm, uint256 blockNumber, uint40 lastBlock) private view returns (bytes32) {
        bytes32 blockHash = blockhash(blockNumber);
        if (blockHash == bytes32(0)) revert RegistryStaleBlock(blockNumber);
        if (blockNumber <= lastBlock) revert RegistryNonceReplayed(blockNumber, lastBlock);
        return _extraData(cvm, blockHash);
    }

    /// @dev keccak256(abi.encode(keccak256("cvm-attest.quote.v1"), chainId, registry, cvm, blockHash)).
    function _extraData(address cvm, bytes32 blockHash) private view returns (bytes32) {
        return keccak256(abi.encode(QUOTE_TYPEHASH, block.chainid, address(this), cvm, blockHash));
    }

    /// @dev Records `cvm` as attested against `goldenId_` under `leaf` with the verified AK and report (every
    /// registration path ends here, so refresh, status and revocation see one kind of record).
    function _record(
        Attestation storage a,
        address cvm,
        bytes32 goldenId_,
        GoldenRecord storage g,
        bytes32 leaf,
        Verdict memory v,
        bytes16 quoteKey,
        uint256 blockNumber
    ) private {
        uint32 lifetime = uint32(g.lifetime);
        uint64 notAfter = _certs[leaf].notAfter;
        uint16 leafEnd = notAfter >> 16 > type(uint16).max ? type(uint16).max : uint16(notAfter >> 16);
        uint40 expiry = _expiry(lifetime, leafEnd);
        if (expiry <= block.timestamp) revert RegistryCertificateExpired(leaf, notAfter);
        a.goldenId = goldenId_;
        a.akHash = v.akHash;
        a.reportHash = v.reportHash;
        a.leaf = leaf;
        _writeSlot3(a, quoteKey, expiry, uint40(blockNumber), lifetime, leafEnd);
        emit CvmRegistered(cvm, goldenId_, v.akHash, v.reportHash, expiry);
    }

    /// @dev Writes the attestation's hot slot (quoteKey, expiry, lastBlock, lifetime, leafEnd) with one SSTORE.
    function _writeSlot3(
        Attestation storage a,
        bytes16 quoteKey,
        uint40 expiry,
        uint40 lastBlock,
        uint32 lifetime,
        uint16 leafEnd
    ) private {
        uint256 packed = uint256(uint128(quoteKey)) | (uint256(expiry) << 128) | (uint256(lastBlock) << 168)
            | (uint256(lifetime) << 208) | (uint256(leafEnd) << 240);
        assembly ("memory-safe") {
            sstore(add(a.slot, 3), packed)
        }
    }

    /// @dev now + `lifetime`, but never past the leaf's end (`leafEnd` units of 65,536 s).
    function _expiry(uint32 lifetime, uint16 leafEnd) private view returns (uint40) {
        uint256 byLifetime = block.timestamp + lifetime;
        uint256 byLeaf = uint256(leafEnd) << 16;
        return uint40(byLifetime < byLeaf ? byLifetime : byLeaf);
    }

    /// @dev `consent` is `cvm`'s secp256k1 signature (r || s || v, low s) over its consent to `goldenId_` (`cvm` is
    /// not zero, so a failed recovery never matches).
    function _requireConsent(address cvm, bytes32 goldenId_, bytes calldata consent) private view {
        bytes32 digest = keccak256(abi.encode(CONSENT_TYPEHASH, block.chainid, address(this), cvm, goldenId_));
        if (ecdsaVerifier.recoverSecp256k1(digest, consent) != cvm) revert RegistryConsentInvalid(cvm, goldenId_);
    }

    function _quoteKey(bytes32 akHash, uint32 pcrMask, bytes32 pcrDigest_) private pure returns (bytes16) {
        return bytes16(keccak256(abi.encode(akHash, pcrMask, pcrDigest_)));
    }

    function _activeGolden(bytes32 id) private view returns (GoldenRecord storage g) {
        g = _goldens[id];
        if (g.status == GoldenStatus.None) revert RegistryGoldenNotFound(id);
        if (g.status == GoldenStatus.Revoked) revert RegistryGoldenRevoked(id);
    }

    /// @dev `id` and every certificate above it are cached and not revoked, and the root's key is still pinned.
    function _requireChainActive(bytes32 id) private view {
        for (uint256 depth = 0; depth < 3; ++depth) {
            CachedCert storage c = _certs[id];
            if (c.kind == CertKind.None) revert RegistryCertificateUnknown(id);
            if (c.revoked) revert RegistryCertificateRevoked(id);
            if (c.kind == CertKind.Ark) {
                if (_rootProduct[c.keyHash] == 0) revert RegistryCertificateRevoked(id);
                return;
            }
            id = c.issuer;
        }
        revert RegistryWrongIssuer(id);
    }

    /// @dev {_requireChainActive} as a predicate, for the views.
    function _chainActive(bytes32 id) private view returns (bool) {
        for (uint256 depth = 0; depth < 3; ++depth) {
            CachedCert storage c = _certs[id];
            if (c.revoked || c.kind == CertKind.None) return false;
            if (c.kind == CertKind.Ark) return _rootProduct[c.keyHash] != 0;
            id = c.issuer;
        }
        return false;
    }

    /// @dev Caches an ARK: RSA, self-signed (issuer name = subject, signature by its own key), key pinned.
    function _cacheRoot(CachedCert storage cert, bytes32 id, ISnpVerifier.Certificate memory c) private {
        uint8 product = _rootProduct[c.keyHash];
        if (product == 0) revert RegistryRootNotPinned(c.keyHash);
        if (!c.isRsa || c.issuerHash != c.subjectHash) revert RegistryWrongIssuer(bytes32(0));
        if (!c.signatureValid) revert RegistryRootSignatureInvalid(id);
        cert.kind = CertKind.Ark;
        cert.product = product;
        cert.notBefore = c.notBefore;
        cert.notAfter = c.notAfter;
        cert.subjectHash = c.subjectHash;
        cert.keyHash = c.keyHash;
        cert.publicKey = c.publicKey;
        cert.exponent = c.exponent;
    }

    /// @dev Caches a certificate whose signature by `parent` verified: an ARK issues RSA ASKs/ASVKs, an ASK issues
    /// P-384 VCEKs and an ASVK P-384 VLEKs.
    function _cacheUnder(
        CachedCert storage cert,
        ISnpVerifier.Certificate memory c,
        bytes32 issuer,
        CachedCert storage parent
    ) private {
        CertKind parentKind = parent.kind;
        if (parentKind == CertKind.Ark) {
            if (!c.isRsa) revert RegistryWrongIssuer(issuer);
            cert.kind = c.isAsvk ? CertKind.Asvk : CertKind.Ask;
            cert.publicKey = c.publicKey;
            cert.exponent = c.exponent;
        } else {
            if (c.isRsa || c.isAsvk) revert RegistryWrongIssuer(issuer);
            bool vcek = parentKind == CertKind.Ask;
            cert.kind = vcek ? CertKind.Vcek : CertKind.Vlek;
            cert.bootloader = c.bootloader;
            cert.tee = c.tee;
            cert.snp = c.snp;
            cert.microcode = c.microcode;
            cert.fmc = c.fmc;
            if (vcek) {
                if (c.hwId.length > HWID_BYTES) revert RegistryWrongIssuer(issuer);
                cert.hwIdLength = uint8(c.hwId.length);
                cert.hwIdHash = keccak256(c.hwId);
            }
            // A leaf's key is kept only as its P-384 table: all a report check needs.
            cert.table = _storeTable(snpVerifier.precomputeKey(c.publicKey));
        }
        cert.product = parent.product;
        cert.issuer = issuer;
        cert.subjectHash = c.subjectHash;
        cert.notBefore = c.notBefore > parent.notBefore ? c.notBefore : parent.notBefore;
        cert.notAfter = c.notAfter < parent.notAfter ? c.notAfter : parent.notAfter;
    }

    /**
     * @dev Deploys `table` as the code of a new contract (a leading STOP byte, so calling it does nothing) and returns
     * its address: 200 gas per byte once, then {ISnpVerifier-verifyReport} reads it with EXTCODECOPY for a few
     * thousand gas instead of 9,216 bytes of storage (~6.4 million gas to write, ~600,000 to read).
     */
    function _storeTable(bytes memory table) private returns (address stored) {
        // Init code: PUSH2 len+1, DUP1, PUSH1 0x0c, PUSH1 0, CODECOPY, PUSH1 0, RETURN; then 0x00 and the table.
        bytes memory init =
            abi.encodePacked(hex"61", uint16(table.length + 1), hex"80600c6000396000f3", hex"00", table);
        assembly ("memory-safe") {
            stored := create(0, add(init, 0x20), mload(init))
        }
        if (stored == address(0)) revert RegistryTableNotStored();
    }

    /// @dev The bytes {_storeTable} stored as the code of `stored` (without the leading STOP byte).
    function _readStored(address stored) private view returns (bytes memory data) {
        assembly ("memory-safe") {
            let size := sub(extcodesize(stored), 1)
            data := mload(0x40)
            mstore(data, size)
            extcodecopy(stored, add(data, 0x20), 1, size)
            mstore(0x40, add(add(data, 0x20), and(add(size, 31), not(31))))
        }
    }

    /// @dev The canonical id of a golden measurement whose struct hash is `goldenHash` with `checks`; reverts
    /// {RegistryGoldenInvalid} (fields 10 to 19) unless they are well formed and check something.
    function _withChecks(bytes32 goldenHash, bytes memory checks) private view returns (bytes32) {
        (bytes32 checksHash, uint8 invalid) = snpVerifier.hashChecks(checks);
        if (invalid != 0) revert RegistryGoldenInvalid(invalid);
        return keccak256(abi.encode(GOLDEN_CHECKS_TYPEHASH, goldenHash, checksHash));
    }

    function _validateGolden(Golden calldata g) private pure {
        if (g.measurement.length != MEASUREMENT_BYTES) revert RegistryGoldenInvalid(1);
        if (g.binding > BINDING_SVSM) revert RegistryGoldenInvalid(2);
        if (g.vmpl > 3 || (g.binding == BINDING_SVSM && g.vmpl != 0)) revert RegistryGoldenInvalid(3);
        if (g.products == 0 || g.products > ALL_PRODUCTS) revert RegistryGoldenInvalid(4);
        if (g.signers == 0 || g.signers > ALL_SIGNERS) revert RegistryGoldenInvalid(5);
        if (g.debugAllowed) revert RegistryGoldenInvalid(6);
        if (g.pcrMask >> TpmQuote.PCR_COUNT != 0) revert RegistryGoldenInvalid(7);
        if (_popcount(g.pcrMask) != g.pcrValues.length) revert RegistryGoldenInvalid(8);
        // At most 2^32 - 1 s (136 years), so that now + lifetime always fits the uint40 expiry.
        if (g.lifetime == 0 || g.lifetime > type(uint32).max) revert RegistryGoldenInvalid(9);
    }

    /// @dev docs/formats.md, "Canonical id" (abi.encode of static values is the concatenation of their words).
    function _goldenId(Golden calldata g) private pure returns (bytes32) {
        bytes memory head = abi.encode(
            GOLDEN_TYPEHASH,
            keccak256(g.measurement),
            g.binding,
            g.vmpl,
            g.products,
            g.signers,
            g.debugAllowed,
            g.migrateMaAllowed,
            g.smtAllowed
        );
        bytes memory tail = abi.encode(
            g.minAbiMajor,
            g.minAbiMinor,
            g.minBootloader,
            g.minTee,
            g.minSnp,
            g.minMicrocode,
            g.minFmc,
            g.pcrMask,
            keccak256(abi.encodePacked(g.pcrValues)),
            g.lifetime
        );
        return keccak256(bytes.concat(head, tail));
    }

    function _popcount(uint256 x) private pure returns (uint256 n) {
        for (; x != 0; x &= x - 1) ++n;
    }

    function _lowestBit(uint32 x) private pure returns (uint8 i) {
        while (x & 1 == 0) {
            x >>= 1;
            ++i;
        }
    }
}
