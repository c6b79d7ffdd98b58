"""AMD's public ASK, ASVK and ARK certificates for Milan, Genoa and Turin, shipped with the package.

``offchain/trust/amd/{product}-vcek.pem`` holds the ASK then the ARK (KDS's
``/vcek/v1/{Product}/cert_chain``), ``{product}-vlek.pem`` the ASVK then the ARK
(``/vlek/v1/{Product}/cert_chain``). They are public AMD data, taken from go-sev-guest's
``verify/trust/`` (commit af1c107a648f47253da23a9de7a7c82ec073cfdb), which embeds the same KDS
answers. With them a VCEK or VLEK alone verifies offline: the intermediate and the root need no
KDS request.

Shipping a certificate trusts nothing by itself: the ARK of each file must carry the key
:data:`offchain.trust.roots.AMD_ARK_SPKI_SHA256` pins for its product line (checked on every
load, so an altered installation fails closed), and the chain is verified as any other by
:func:`offchain.verify.chain.verify_chain`.
"""

from __future__ import annotations

import hmac
from functools import cache
from importlib import resources

from cryptography import x509

from offchain.abi.snp_report import Product, SignerKind
from offchain.errors import Reason, VerificationError
from offchain.trust.certs import CertRole, classify, parse_certificates
from offchain.trust.roots import AMD_ARK_SPKI_SHA256, spki_fingerprint


def shipped_file(product: Product, signer: SignerKind) -> str:
    """The package resource name of a product line's intermediate-and-root bundle."""
    return f"{product.value}-{signer.value}.pem"


def shipped_bundle(product: Product, signer: SignerKind) -> bytes:
    """The PEM bytes as shipped (``cvm-cli snp fetch ca`` writes them out without asking KDS)."""
    return resources.files("offchain.trust").joinpath("amd", shipped_file(product, signer)).read_bytes()


@cache
def shipped_chain(product: Product, signer: SignerKind) -> tuple[x509.Certificate, x509.Certificate]:
    """``(ASK or ASVK, ARK)`` of ``product`` for leaves of kind ``signer``; raises
    ``snp.chain.root_not_pinned`` if the shipped ARK is not the pinned key."""
    certificates = parse_certificates(shipped_bundle(product, signer))
    roles = {classify(cert): cert for cert in certificates}
    wanted = CertRole.intermediate_for(signer)
    if set(roles) != {wanted, CertRole.ARK} or len(certificates) != 2:
        raise VerificationError(Reason.CHAIN_INCOMPLETE, f"the shipped {shipped_file(product, signer)} does not hold"
                                f" the {wanted.value.upper()} and the ARK")
    ark = roles[CertRole.ARK]
    if not hmac.compare_digest(spki_fingerprint(ark), AMD_ARK_SPKI_SHA256[product]):
        raise VerificationError(Reason.CHAIN_ROOT_NOT_PINNED, f"the shipped {shipped_file(product, signer)} holds an"
                                " ARK whose key is not the pinned one: the installation was altered")
    return roles[wanted], ark
