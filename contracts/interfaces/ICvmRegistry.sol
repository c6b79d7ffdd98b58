// SPDX-License-Identifier: Apache-2.0
// cvm-attest: ICvmRegistry, the on-chain registry of attested AMD SEV-SNP confidential VMs
pragma solidity ^0.8.24;

/**
 * @dev The registry of attested confidential VMs (PROTOCOL.md, "On-chain model").
 *
 * The owner pins AMD root keys per product and publishes golden measurements (what an acceptable CVM is). Anyone
 * registers certificates (verified on chain up to a pinned root and cached by id), and anyone relays a CVM's
 * evidence: {registerCvm} verifies the SEV-SNP report natively, the golden policy, the binding of the vTPM's
 * attestation key (AK) to the report and a TPM quote by that AK over a nonce only the CVM's own agent computes for
 * its own address, then records the CVM's address as attested until the measurement's lifetime runs out.
 * {refreshCvm} extends it with a new quote. dApps ask {isAttested}, or inherit `CvmGated`.
 *
 * Identifiers:
 * - certificate id: `keccak256(DER bytes)`;
 * - root key hash: SHA-256 of the ARK's DER SubjectPublicKeyInfo (the fingerprint `offchain.trust` pins);
 * - golden id: the EIP-712-style struct hash of docs/formats.md ("Canonical id"), computed by {goldenId};
 * - AK hash: keccak256 of the AK's key, the RSA-2048 modulus or the P-256 point x || y (the direct binding's
 *   REPORT_DATA holds SHA-256 of the whole TPMT_PUBLIC instead; Azure publishes only the modulus).
 *
 * - golden id with report checks: the struct hash of `CvmGoldenWithChecks(CvmGolden golden, CvmReportChecks checks)`
 *   ({goldenIdWithChecks}, {publishGoldenWithChecks}): the id covers the checks, which therefore never change.
 *
 * Product codes are bits, so a golden measurement's `products` is a mask of them: 1 Milan, 2 Genoa, 4 Turin.
 * Signer codes likewise: 1 VCEK, 2 VLEK. Binding: 0 direct, 1 Azure, 2 SVSM.
 *
 * The SVSM binding ({registerCvmSvsm}) needs a credential activation, which proves the AK lives in the vTPM whose
 * endorsement key (EK) the VMPL0 report carries but needs a secret a contract cannot keep: the registry verifies
 * the report, its REPORT_DATA = SHA-512(svsmNonce || EK TPMT_PUBLIC) and the quote natively, and takes the
 * activation itself from an activator key the owner names ({setActivator}). TPM names: `name(public) =
 * 0x000B || SHA-256(TPMT_PUBLIC)` (nameAlg SHA-256); the activation statement carries the 32-byte SHA-256 part.
 */
interface ICvmRegistry {
    /// @dev What a cached certificate is. ARKs are self-signed roots, ASKs issue VCEKs, ASVKs issue VLEKs.
    enum CertKind {
        None,
        Ark,
        Ask,
        Asvk,
        Vcek,
        Vlek
    }

    /// @dev A golden measurement exactly as docs/formats.md defines its canonical id (field order matters).
    struct Golden {
        /// @dev SNP launch MEASUREMENT, 48 bytes.
        bytes measurement;
        /// @dev 0 direct, 1 Azure, 2 SVSM (whose golden `vmpl` must be 0).
        uint8 binding;
        /// @dev Required VMPL of the report (exact).
        uint8 vmpl;
        /// @dev Accepted products (mask: 1 Milan, 2 Genoa, 4 Turin).
        uint8 products;
        /// @dev Accepted signers (mask: 1 VCEK, 2 VLEK).
        uint8 signers;
        /// @dev Must be false: the registry refuses golden measurements that allow debugging (see {publishGolden}).
        bool debugAllowed;
        bool migrateMaAllowed;
        bool smtAllowed;
        uint8 minAbiMajor;
        uint8 minAbiMinor;
        uint8 minBootloader;
        uint8 minTee;
        uint8 minSnp;
        uint8 minMicrocode;
        /// @dev Compared on Turin only.
        uint8 minFmc;
        /// @dev Bit i set when PCR i (SHA-256 bank, 0..23) is pinned.
        uint32 pcrMask;
        /// @dev The pinned values in ascending PCR order; one per bit of `pcrMask`.
        bytes32[] pcrValues;
        /// @dev Seconds an attestation against this measurement stays valid after its last quote.
        uint64 lifetime;
    }

    /**
     * @dev A CVM's evidence as calldata. The quote and the AK public key are TPM wire format; `pcrs` are the values
     * of the quote's PCR selection in ascending PCR order.
     *
     * Azure binding: `runtimeData` is the HCL runtime-data JSON exactly as found in the HCL report; the caller
     * gives the offsets of the AK's JWK in it and the registry checks the bytes there instead of searching
     * (contracts/libraries/AzureBinding.sol): `akKidOffset` is where `{"kid":"HCLAkPub",` starts and
     * `akModulusOffset` the first character of the modulus, right after `"e":"AQAB","n":"`; the modulus is
     * followed by `"}` and no `{` or `}` lies between the two (at most 128 bytes apart). The direct binding
     * leaves these empty/zero.
     */
    struct Evidence {
        /// @dev The 1184-byte SEV-SNP ATTESTATION_REPORT.
        bytes report;
        /// @dev Id of the registered VCEK or VLEK that signed the report.
        bytes32 leaf;
        /// @dev 0 direct, 1 Azure.
        uint8 binding;
        bytes runtimeData;
        uint32 akKidOffset;
        uint32 akModulusOffset;
        /// @dev The AK's TPMT_PUBLIC.
        bytes akPublic;
        /// @dev The quote's TPMS_ATTEST.
        bytes attest;
        /// @dev The quote's TPMT_SIGNATURE.
        bytes signature;
        bytes32[] pcrs;
    }

    /**
     * @dev An SVSM vTPM's evidence ({registerCvmSvsm}): the SVSM's own report (VMPL0) whose REPORT_DATA is
     * SHA-512(svsmNonce || manifest), where `manifest` is the vTPM's EK as its TPMT_PUBLIC, and a quote by the AK
     * the activation statement binds to that EK.
     */
    struct SvsmEvidence {
        /// @dev The 1184-byte SEV-SNP ATTESTATION_REPORT, requested by the SVSM at VMPL0.
        bytes report;
        /// @dev Id of the registered VCEK or VLEK that signed the report.
        bytes32 leaf;
        /// @dev The 64-byte nonce the requester chose for the SVSM's attestation.
        bytes svsmNonce;
        /// @dev The vTPM service manifest: the EK's TPMT_PUBLIC as the TPM marshals it.
        bytes manifest;
        /// @dev The AK's TPMT_PUBLIC.
        bytes akPublic;
        /// @dev The quote's TPMS_ATTEST.
        bytes attest;
        /// @dev The quote's TPMT_SIGNATURE.
        bytes signature;
        bytes32[] pcrs;
    }

    /// @dev What a successful verification established.
    struct Verdict {
        bytes32 goldenId;
        /// @dev Product code of the chain (1 Milan, 2 Genoa, 4 Turin).
        uint8 product;
        /// @dev Signer code (1 VCEK, 2 VLEK).
        uint8 signer;
        /// @dev keccak256 of the report.
        bytes32 reportHash;
        /// @dev keccak256 of the AK's key: the RSA modulus or the P-256 x || y (zero for {verifyReport}).
        bytes32 akHash;
    }

    /// @dev The attestation record of a CVM address. `quoteKey` through `leafEnd` share one storage slot, the only one
    /// {refreshCvm} reads and writes.
    struct Attestation {
        bytes32 goldenId;
        /// @dev keccak256 of the bound AK's key (RSA modulus, or P-256 x || y).
        bytes32 akHash;
        /// @dev keccak256 of the registered report.
        bytes32 reportHash;
        /// @dev First 16 bytes of keccak256(abi.encode(akHash, PCR selection mask, pcrDigest)) of the registered
        /// quote: what a refresh must match (finding another AK and PCR state with the same key takes 2^128 work).
        bytes16 quoteKey;
        /// @dev Unix time the attestation lapses: never after the leaf's validity ends (`leafEnd`).
        uint40 expiry;
        /// @dev Block number of the last accepted quote nonce.
        uint40 lastBlock;
        /// @dev The golden measurement's lifetime, kept here so a refresh need not read the golden record.
        uint32 lifetime;
        /// @dev The leaf's notAfter (intersected with its chain's) in units of 65,536 s, rounded down: the latest
        /// expiry a registration or refresh sets (so an attestation may end up to ~18 h before the leaf does).
        uint16 leafEnd;
        /// @dev Certificate id of the VCEK/VLEK the report was accepted under: {isAttested} walks its chain after
        /// any revocation.
        bytes32 leaf;
    }

    /// @dev Why a CVM address is or is not attested ({attestationStatus}).
    enum AttestationStatus {
        Attested,
        NotRegistered,
        Expired,
        /// @dev The attestation reached the end of its leaf certificate's validity.
        LeafExpired,
        GoldenRevoked,
        /// @dev A certificate of its chain is revoked or its root is unpinned.
        ChainRevoked,
        /// @dev Attested, but against another golden measurement than the one asked about.
        OtherGolden
    }

    /// @dev A cached certificate.
    struct CertificateInfo {
        CertKind kind;
        bool revoked;
        uint8 product;
        /// @dev Validity of the chain up to the root: the latest notBefore and earliest notAfter along it.
        uint64 notBefore;
        uint64 notAfter;
        /// @dev The issuer's certificate id (zero for an ARK).
        bytes32 issuer;
    }

    /// @dev A published golden measurement's state.
    struct GoldenInfo {
        bool published;
        bool revoked;
        uint64 lifetime;
        uint8 binding;
        uint32 pcrMask;
    }

    // ----- events -------------------------------------------------------------------------------------------------

    /// @dev The owner pinned the ARK key whose SubjectPublicKeyInfo hashes to `keyHash` for `product`.
    event RootPinned(uint8 indexed product, bytes32 indexed keyHash);
    /// @dev The owner unpinned a root key: certificates under it stop verifying.
    event RootUnpinned(bytes32 indexed keyHash);
    /// @dev A certificate verified up to a pinned root and was cached as `id`.
    event CertificateRegistered(bytes32 indexed id, bytes32 indexed issuer, CertKind kind, uint8 product);
    /// @dev The owner revoked a cached certificate: it and everything under it stop verifying.
    event CertificateRevoked(bytes32 indexed id);
    /// @dev The owner published a golden measurement.
    event GoldenPublished(bytes32 indexed id, bytes measurement, uint64 lifetime);
    /// @dev The owner revoked a golden measurement: every CVM attested against it stops being attested.
    event GoldenRevoked(bytes32 indexed id);
    /// @dev `cvm` proved it runs a CVM matching `goldenId`, attested until `expiry`.
    event CvmRegistered(
        address indexed cvm, bytes32 indexed goldenId, bytes32 akHash, bytes32 reportHash, uint64 expiry
    );
    /// @dev `cvm` proved again, with a new quote by its bound AK, that it still runs; attested until `expiry`.
    event CvmRefreshed(address indexed cvm, uint64 expiry);
    /// @dev The attested `cvm` signed `sealingKey` (X25519) as the key secrets for it are sealed to.
    event CvmSealingKeyPublished(address indexed cvm, bytes32 sealingKey);
    /// @dev The owner named (`allowed`) or unnamed `activator` as a signer of SVSM activation statements.
    event ActivatorSet(address indexed activator, bool allowed);

    // ----- errors: owner input ----------------------------------------------------------------------------------

    /// @dev The golden measurement is malformed or unacceptable.
    /// @param field 1 measurement length, 2 binding, 3 vmpl (above 3, or not 0 with the SVSM binding), 4 products, 5 signers, 6 debugAllowed (refused),
    /// 7 pcrMask (PCR above 23), 8 pcrValues (count differs from pcrMask), 9 lifetime (zero, or 2^32 s or more);
    /// the report checks ({publishGoldenWithChecks}): 10 they check nothing (publish without them), 11 reportData,
    /// 12 hostData, 13 idKeyDigest, 14 authorKeyDigest, 15 familyId, 16 imageId (a length other than the field's
    /// or zero), 18 chipIds (an id that is not 64 bytes), 19 platformInfo (a bit outside platformInfoMask).
    error RegistryGoldenInvalid(uint8 field);
    /// @dev A golden measurement with this id was already published (revocation is final).
    error RegistryGoldenExists(bytes32 id);
    /// @dev No golden measurement with this id was published.
    error RegistryGoldenNotFound(bytes32 id);
    /// @dev The golden measurement was revoked.
    error RegistryGoldenRevoked(bytes32 id);
    /// @dev Product code is not one of 1, 2, 4.
    error RegistryProductInvalid(uint8 product);
    /// @dev This root key is already pinned.
    error RegistryRootAlreadyPinned(bytes32 keyHash);

    // ----- errors: certificates ---------------------------------------------------------------------------------

    /// @dev A self-signed certificate whose key is not pinned as an AMD root.
    error RegistryRootNotPinned(bytes32 keyHash);
    /// @dev No certificate with this id is cached.
    error RegistryCertificateUnknown(bytes32 id);
    /// @dev The certificate, or one above it, was revoked (or its root unpinned).
    error RegistryCertificateRevoked(bytes32 id);
    /// @dev The certificate cannot sit under this issuer: wrong kind (an ASK issues VCEKs, an ASVK VLEKs, an ARK
    /// ASKs and ASVKs), a key of the wrong type, or an issuer name that is not the issuer's subject.
    error RegistryWrongIssuer(bytes32 issuer);
    /// @dev The ARK's self-signature does not verify.
    error RegistryRootSignatureInvalid(bytes32 id);
    /// @dev The ASK/ASVK's signature by the ARK does not verify.
    error RegistryIntermediateSignatureInvalid(bytes32 id);
    /// @dev The VCEK/VLEK's signature by the ASK/ASVK does not verify.
    error RegistryLeafSignatureInvalid(bytes32 id);
    /// @dev The certificate chain's validity ended at `notAfter`.
    error RegistryCertificateExpired(bytes32 id, uint64 notAfter);
    /// @dev The certificate chain's validity starts at `notBefore`.
    error RegistryCertificateNotYetValid(bytes32 id, uint64 notBefore);
    /// @dev The id given as the report's signer is not a VCEK or VLEK.
    error RegistryNotALeaf(bytes32 id);
    /// @dev Deploying a leaf key's P-384 table (as contract code) failed: not enough gas left.
    error RegistryTableNotStored();

    // ----- errors: the SEV-SNP report ---------------------------------------------------------------------------

    /// @dev The report's ECDSA P-384 signature does not verify with the leaf's key.
    error RegistryReportSignatureInvalid();
    /// @dev The leaf certificate's SPLs differ from the report's REPORTED_TCB.
    error RegistryTcbMismatch();
    /// @dev The VCEK's hwID differs from the report's CHIP_ID.
    error RegistryHwIdMismatch();
    /// @dev The report's SIGNING_KEY field does not name the kind of the leaf certificate.
    error RegistrySignerMismatch();
    /// @dev The report's CPUID family/model names another product line than the certificate chain.
    error RegistryProductMismatch(uint8 reported, uint8 chain);

    // ----- errors: the golden policy ----------------------------------------------------------------------------

    /// @dev The report's MEASUREMENT is not the golden measurement's.
    error RegistryMeasurementMismatch();
    /// @dev The guest policy allows debugging (POLICY bit 19); no golden measurement allows it.
    error RegistryDebugAllowed();
    /// @dev The guest policy allows a migration agent (bit 18) and the golden measurement does not.
    error RegistryMigrateMaAllowed();
    /// @dev The guest policy allows SMT (bit 16) and the golden measurement does not.
    error RegistrySmtNotAllowed();
    /// @dev The guest policy's ABI version (major, minor) is below the golden minimum.
    error RegistryAbiTooOld(uint8 major, uint8 minor);
    /// @dev The report's VMPL is not the golden one.
    error RegistryVmplMismatch(uint32 vmpl);
    /// @dev A REPORTED_TCB component is below the golden minimum.
    /// @param component 1 bootloader, 2 tee, 3 snp, 4 microcode, 5 fmc.
    error RegistryTcbTooLow(uint8 component);
    /// @dev The chain's product line is not among the golden measurement's.
    error RegistryProductNotAllowed(uint8 product);
    /// @dev The signing key kind (1 VCEK, 2 VLEK) is not among the golden measurement's.
    error RegistrySignerNotAllowed(uint8 signer);
    /// @dev The evidence's AK binding (0 direct, 1 Azure, 2 SVSM) is not the golden measurement's, or not one the
    /// function takes ({registerCvm}: 0 or 1; {registerCvmSvsm}: 2).
    error RegistryBindingNotAllowed(uint8 binding);
    /// @dev The quote's value of a pinned PCR differs from the golden value.
    error RegistryPcrMismatch(uint8 pcr);
    /// @dev A pinned PCR is not in the quote's selection.
    error RegistryPcrMissing(uint8 pcr);
    /// @dev The report fails one of the golden measurement's report checks ({ISnpVerifier-ReportChecks}).
    /// @param check 1 reportData, 2 hostData, 3 idKeyDigest, 4 authorKeyDigest, 5 familyId, 6 imageId (the field
    /// differs), 7 minGuestSvn, 8 chipIds (CHIP_ID not listed), 9 platformInfo (a checked bit differs), 10 minFirmware
    /// (CURRENT_MAJOR.MINOR and CURRENT_BUILD below it).
    error RegistryReportCheckFailed(uint8 check);

    // ----- errors: the AK binding -------------------------------------------------------------------------------

    /// @dev Direct binding: REPORT_DATA is not SHA-256(AK TPMT_PUBLIC) || 32 zero bytes. SVSM binding: the nonce is
    /// not 64 bytes, or REPORT_DATA is not SHA-512(svsmNonce || manifest).
    error RegistryReportDataMismatch();
    /// @dev Azure binding: REPORT_DATA is not SHA-256(runtime data) || 32 zero bytes.
    error RegistryRuntimeDataMismatch();
    /// @dev Azure binding: the bytes at the caller's offsets are not the HCLAkPub JWK syntax the registry requires.
    error RegistryAkJwkOffsets(uint32 akKidOffset, uint32 akModulusOffset);
    /// @dev The AK does not match the bound key (Azure: the JWK modulus or exponent; refresh: the registered AK).
    error RegistryAkMismatch();

    // ----- errors: the quote ------------------------------------------------------------------------------------

    /// @dev The quote's signature does not verify with the AK.
    error RegistryQuoteSignatureInvalid();
    /// @dev TPMS_ATTEST.extraData is not the expected value.
    error RegistryQuoteNonceMismatch();
    /// @dev pcrDigest is not SHA-256 of the PCR values given.
    error RegistryPcrDigestMismatch();
    /// @dev The number of PCR values given differs from the quote's selection.
    error RegistryPcrCount(uint256 given, uint256 selected);

    // ----- errors: freshness and records ------------------------------------------------------------------------

    /// @dev The nonce's block is not one of the last 256 blocks (or not yet mined).
    error RegistryStaleBlock(uint256 blockNumber);
    /// @dev The nonce's block is not newer than the last one accepted for this CVM: a replayed quote.
    error RegistryNonceReplayed(uint256 blockNumber, uint64 lastBlock);
    /// @dev The CVM address is the zero address.
    error RegistryZeroAddress();
    /// @dev The CVM has no attestation to refresh.
    error RegistryCvmNotRegistered(address cvm);
    /// @dev The attestation lapsed: a full {registerCvm} is needed.
    error RegistryAttestationExpired(address cvm, uint64 expiry);
    /// @dev The refresh quote's PCR selection or digest differs from the registered one.
    error RegistryPcrsChanged();
    /// @dev `consent` is not `cvm`'s signature over its consent to golden measurement `goldenId`
    /// (docs/formats.md, "golden consent").
    error RegistryConsentInvalid(address cvm, bytes32 goldenId);
    /// @dev `cvm` is not attested now ({attestationStatus} says why): it cannot publish a sealing key.
    error RegistryCvmNotAttested(address cvm, AttestationStatus status);
    /// @dev `signature` is not `cvm`'s signature over its sealing key (docs/formats.md, "sealing key"), or the key
    /// is zero.
    error RegistrySealingKeyInvalid(address cvm);

    // ----- errors: SVSM activation ------------------------------------------------------------------------------

    /// @dev The activation statement for the EK and AK of the evidence recovers to `signer`, which is no activator
    /// the owner named: an unknown key signed it, or it was signed over other names (another EK or AK), another
    /// expiry, chain or registry (the zero address: the signature is malformed).
    error RegistryActivatorUnknown(address signer);
    /// @dev The activation statement expired at `expiry` (it is valid while block.timestamp < expiry).
    error RegistryActivationExpired(uint64 expiry);

    // ----- owner ------------------------------------------------------------------------------------------------

    /**
     * @dev Pins the AMD ARK whose DER SubjectPublicKeyInfo hashes (SHA-256) to `keyHash` as the root of `product`.
     * Only pinned roots anchor certificates. A development deployment pins the simulated platform's dev ARK here.
     * Emits {RootPinned}. Owner only.
     */
    function pinRoot(uint8 product, bytes32 keyHash) external;

    /// @dev Unpins a root key: every certificate under it stops verifying, and every CVM attested under it stops being
    /// attested (it is again if the key is pinned again). Emits {RootUnpinned}. Owner only.
    function unpinRoot(bytes32 keyHash) external;

    /// @dev Revokes a cached certificate and, transitively, everything under it: certificates stop verifying and CVMs
    /// attested under it stop being attested (final). Emits {CertificateRevoked}. Owner only.
    function revokeCertificate(bytes32 id) external;

    /**
     * @dev Publishes a golden measurement and returns its canonical id. Emits {GoldenPublished}. Owner only.
     *
     * IMPORTANT: measurements that allow debugging are refused ({RegistryGoldenInvalid} field 6): the host can
     * read and write a debuggable guest's memory, so attesting one on chain would prove nothing.
     */
    function publishGolden(Golden calldata golden) external returns (bytes32 id);

    /**
     * @dev Publishes a golden measurement with report checks (`checks`: an ABI-encoded {ISnpVerifier-ReportChecks},
     * the `checks` of a version-2 golden measurement) and returns its canonical id, which covers the checks
     * ({goldenIdWithChecks}). Every registration and verification against it then also runs the checks, after the
     * golden rules: {RegistryReportCheckFailed}. Checks that are malformed or check nothing are refused
     * ({RegistryGoldenInvalid} fields 10 to 19). Emits {GoldenPublished}. Owner only.
     */
    function publishGoldenWithChecks(Golden calldata golden, bytes calldata checks) external returns (bytes32 id);

    /// @dev Revokes a golden measurement: {isAttested} turns false for every CVM attested against it.
    /// Emits {GoldenRevoked}. Owner only.
    function revokeGolden(bytes32 id) external;

    /**
     * @dev Names (`allowed`) or unnames `activator` as a key whose SVSM activation statements {registerCvmSvsm}
     * accepts. Emits {ActivatorSet}. Owner only; the zero address is refused ({RegistryZeroAddress}).
     *
     * IMPORTANT: an activator vouches that an AK lives in the vTPM of an EK; the owner trusts it to have run a real
     * credential activation (MakeCredential for the AK's name under the EK, answered by TPM2_ActivateCredential)
     * for every statement it signs. A dishonest or compromised activator can attest a software AK. Unnaming one
     * stops new registrations only: revoke the golden measurement to end attestations it vouched for.
     */
    function setActivator(address activator, bool allowed) external;

    // ----- anyone -----------------------------------------------------------------------------------------------

    /**
     * @dev Verifies `der` under the cached certificate `issuer` (RSASSA-PSS SHA-384 on chain) and caches it;
     * returns its id. `issuer` zero registers an ARK: self-signed, key pinned by {pinRoot}. An ARK issues ASKs
     * and ASVKs; an ASK issues VCEKs and an ASVK VLEKs. Registering a cached certificate again returns its id
     * without re-verifying. Emits {CertificateRegistered}.
     */
    function registerCertificate(bytes calldata der, bytes32 issuer) external returns (bytes32 id);

    /**
     * @dev Verifies `evidence` against golden measurement `goldenId` with the quote's extraData bound to this chain,
     * this registry, `cvm` and the hash of block `blockNumber` (docs/formats.md, "quote extraData, on chain"), and
     * records `cvm` as attested until `block.timestamp + lifetime` (or the end of its leaf's validity, if sooner).
     * Anyone may relay: `msg.sender` plays no part. `blockNumber` must be one of the last 256 blocks and newer than the
     * last one accepted for `cvm`. `consent` is `cvm`'s own signature (65 bytes r || s || v, low s) over
     * keccak256(abi.encode(keccak256("cvm-attest.consent.v1"), chainId, registry, cvm, goldenId)): only the CVM
     * chooses the golden measurement it is attested under, so nobody can move an attested CVM to another golden it
     * also satisfies ({RegistryConsentInvalid}). Emits {CvmRegistered}.
     */
    function registerCvm(
        bytes32 goldenId,
        address cvm,
        uint256 blockNumber,
        Evidence calldata evidence,
        bytes calldata consent
    ) external;

    /**
     * @dev {registerCvm} for an SVSM vTPM (golden binding 2). Verifies natively the report and its chain as
     * {registerCvm} does, VMPL 0 ({RegistryVmplMismatch}), REPORT_DATA = SHA-512(svsmNonce || manifest) with a
     * 64-byte nonce ({RegistryReportDataMismatch}), the golden measurement's binding and policy, the quote by the AK
     * over the on-chain extraData (fresh block, as {registerCvm}), the PCRs and `cvm`'s `consent`. The AK is tied
     * to the EK by the activation statement: `activationSignature` (65 bytes r || s || v, low s, over the raw
     * digest) by an activator ({setActivator}) over keccak256(abi.encode(keccak256("cvm-attest.svsm-activation.v1"),
     * chainId, registry, ekName, akName, activationExpiry)), with ekName = SHA-256(manifest) and akName =
     * SHA-256(akPublic) computed here ({RegistryActivatorUnknown}), valid while block.timestamp < activationExpiry
     * ({RegistryActivationExpired}). Records the attestation exactly as {registerCvm} does, so {refreshCvm},
     * {isAttested} and revocation work unchanged. Emits {CvmRegistered}.
     */
    function registerCvmSvsm(
        bytes32 goldenId,
        address cvm,
        uint256 blockNumber,
        SvsmEvidence calldata evidence,
        uint64 activationExpiry,
        bytes calldata activationSignature,
        bytes calldata consent
    ) external;

    /**
     * @dev Re-attests a registered, unexpired CVM with a new quote by its bound AK over the same PCR selection and
     * digest, with a nonce from a newer block. Extends the attestation by the golden lifetime. Emits {CvmRefreshed}.
     *
     * A refresh after any certificate revocation or root unpinning walks the CVM's chain and reverts with the
     * chain's error ({RegistryCertificateRevoked}); past the leaf's validity it reverts {RegistryCertificateExpired}.
     * The new expiry never passes the leaf's validity.
     *
     * NOTE: a refresh does not look at the golden measurement's record (one storage read too many for its gas
     * budget), so it also succeeds after the measurement was revoked; that CVM stays unattested all the same, since
     * {isAttested} checks revocation on every read.
     *
     * To stay cheap (at most 80,000 gas for the whole transaction) it takes the AK and the signature bare instead of
     * as TPM structures: `akKey` is the RSA-2048 modulus (256 bytes) or the P-256 point x || y (64 bytes), and
     * `signature` the 256-byte RSASSA-PKCS1-v1_5 signature or ECDSA r || s (64 bytes), over SHA-256 of `attest`.
     */
    function refreshCvm(
        address cvm,
        uint256 blockNumber,
        bytes calldata akKey,
        bytes calldata attest,
        bytes calldata signature
    ) external;

    // ----- views ------------------------------------------------------------------------------------------------

    /**
     * @dev Performs every check of {registerCvm} except freshness, with `expectedExtraData` as the quote's expected
     * extraData (e.g. a raw nonce of third-party evidence), and returns the verdict or reverts with the reason.
     * Stores nothing. `goldenId` zero checks the evidence (chain, report, binding, quote) without a golden policy.
     *
     * NOTE: evidence whose nonce the caller chose proves a CVM existed, not that it is live or that it holds any
     * Ethereum key; only {registerCvm} makes an address attested.
     */
    function verifyEvidence(bytes32 goldenId, bytes calldata expectedExtraData, Evidence calldata evidence)
        external
        view
        returns (Verdict memory);

    /**
     * @dev Checks a bare SEV-SNP report: its signature by the cached `leaf`, the leaf's binding to the report and,
     * when `goldenId` is not zero, the golden policy's report rules; a golden measurement that pins PCRs fails with
     * {RegistryPcrMissing}, since a bare report proves no PCR. With Azure `runtimeData` it also checks REPORT_DATA ==
     * SHA-256(runtimeData) || 32 zero bytes and that the golden binding is Azure. Reverts with the reason.
     *
     * NOTE: a bare report proves no freshness: it may be of any age, replayed by anyone who kept it. Only
     * {registerCvm} and {refreshCvm} (a quote over a recent block hash) are fresh.
     */
    function verifyReport(bytes calldata report, bytes32 leaf, bytes32 goldenId, bytes calldata runtimeData)
        external
        view
        returns (Verdict memory);

    /// @dev True while `cvm` has an unexpired attestation against a golden measurement that is not revoked, under a
    /// leaf that is still valid and whose chain has no revoked certificate and a pinned root.
    function isAttested(address cvm) external view returns (bool);

    /// @dev {isAttested}, and attested against golden measurement `goldenId` in particular.
    function isAttestedFor(address cvm, bytes32 goldenId) external view returns (bool);

    /// @dev Whether `cvm` is attested (against `goldenId`, or any when it is zero), and if not, why: the reason
    /// {isAttested} and {isAttestedFor} answer false.
    function attestationStatus(address cvm, bytes32 goldenId) external view returns (AttestationStatus);

    /// @dev The attestation record of `cvm` (all zero when it never registered) and its {attestationStatus} for any
    /// golden measurement.
    function attestationOf(address cvm) external view returns (Attestation memory record, AttestationStatus status);

    /// @dev The canonical id of `golden` (docs/formats.md), the same as `offchain` GoldenMeasurement.canonical_id().
    function goldenId(Golden calldata golden) external pure returns (bytes32);

    /// @dev The canonical id of `golden` with report `checks` (docs/formats.md): the EIP-712 struct hash of
    /// `CvmGoldenWithChecks(CvmGolden golden, CvmReportChecks checks)`. Reverts {RegistryGoldenInvalid} for malformed
    /// checks.
    function goldenIdWithChecks(Golden calldata golden, bytes calldata checks) external view returns (bytes32);

    /// @dev The ABI-encoded report checks golden measurement `id` was published with (empty when none).
    function reportChecksOf(bytes32 id) external view returns (bytes memory checks);

    /**
     * @dev Records `sealingKey` (the X25519 public key of `cvm`'s agent) as the key to seal secrets for `cvm` to.
     * Anyone may submit it; it is accepted only while `cvm` is attested and only with `cvm`'s own secp256k1
     * signature (r || s || v, low s) over `keccak256(abi.encode(keccak256("cvm-attest.sealing-key.v1"),
     * block.chainid, address(this), cvm, sealingKey))`: the key that the attestation proved lives in the CVM vouches
     * for it. Replaces an earlier key of `cvm`. Emits {CvmSealingKeyPublished}.
     */
    function publishSealingKey(address cvm, bytes32 sealingKey, bytes calldata signature) external;

    /// @dev The sealing key `cvm` published (zero when none) and its {attestationStatus}: seal only to the key of a
    /// CVM that is `Attested`.
    function sealingKeyOf(address cvm) external view returns (bytes32 sealingKey, AttestationStatus status);

    /// @dev Whether the owner named `activator` ({setActivator}).
    function isActivator(address activator) external view returns (bool);

    /// @dev State of golden measurement `id`.
    function goldenOf(bytes32 id) external view returns (GoldenInfo memory);

    /// @dev The cached certificate `id`.
    function certificateOf(bytes32 id) external view returns (CertificateInfo memory);

    /// @dev The product a root key is pinned for (0 when not pinned).
    function rootProduct(bytes32 keyHash) external view returns (uint8);

    /// @dev The quote extraData the registry expects from `cvm` for a nonce from block `blockNumber` (zero when
    /// that block's hash is not available).
    function quoteExtraData(address cvm, uint256 blockNumber) external view returns (bytes32);
}
