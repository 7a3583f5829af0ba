"""The MLS (RFC 9420) the voice gateway needs as DAVE's delivery service and external sender.

The fake voice gateway is not an MLS member: it never holds group secrets. Like
Discord's, it only needs to

- publish its external-sender credential and P-256 signature key (op 25),
- read and verify members' key packages (op 26),
- build and sign external Add/Remove proposals (op 27) and compute their refs,
- read commits (op 28): epoch, sender, proposal refs, split off the welcome,
- cut a welcome down to one joiner's secrets (op 30).

Everything is ciphersuite 2 (MLS_128_DHKEMP256_AES128GCM_SHA256_P256): SHA-256
hashes and ECDSA P-256 signatures (DER-encoded, as MLS implementations send
them) over RFC 9420's ``SignWithLabel`` content. Only what DAVE v1 uses is
parsed; anything else raises :class:`MlsError`.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from typing import Any

CIPHERSUITE = 2  # MLS_128_DHKEMP256_AES128GCM_SHA256_P256
MLS10 = 1
BASIC_CREDENTIAL = 1

# WireFormat
PUBLIC_MESSAGE = 1
WELCOME = 3
KEY_PACKAGE = 5
# ContentType
PROPOSAL = 2
COMMIT = 3
# SenderType
MEMBER = 1
EXTERNAL = 2
# ProposalType
ADD = 1
REMOVE = 3
# ProposalOrRefType
BY_VALUE = 1
BY_REFERENCE = 2
# LeafNodeSource
FROM_KEY_PACKAGE = 1
FROM_UPDATE = 2
FROM_COMMIT = 3

MAX_LIFETIME = (0, (1 << 64) - 1)  # DAVE requires key packages to be valid forever


class MlsError(ValueError):
    """A malformed, unsupported or badly signed MLS structure."""


# -- TLS presentation language (RFC 9420 section 2.1) ------------------------------


def varint(n: int) -> bytes:
    """MLS variable-length vector header: 1, 2 or 4 bytes, the top two bits the size."""
    if n < 1 << 6:
        return bytes([n])
    if n < 1 << 14:
        return struct.pack(">H", 0x4000 | n)
    if n < 1 << 30:
        return struct.pack(">I", 0x8000_0000 | n)
    raise MlsError(f"vector too long ({n} bytes)")


def vec(data: bytes) -> bytes:
    return varint(len(data)) + data


class Reader:
    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data = data
        self.pos = offset

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise MlsError("truncated MLS structure")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def u64(self) -> int:
        return int.from_bytes(self.take(8), "big")

    def length(self) -> int:
        first = self.u8()
        prefix = first >> 6
        if prefix == 0:
            return first & 0x3F
        if prefix == 1:
            return ((first & 0x3F) << 8) | self.u8()
        if prefix == 2:
            return ((first & 0x3F) << 24) | int.from_bytes(self.take(3), "big")
        raise MlsError("invalid vector length header")

    def vec(self) -> bytes:
        return self.take(self.length())

    def sub(self) -> Reader:
        """A reader over the next vector's contents."""
        return Reader(self.vec())

    @property
    def done(self) -> bool:
        return self.pos >= len(self.data)

    def rest(self) -> bytes:
        return self.data[self.pos :]


# -- signatures and hashes ---------------------------------------------------------


def sign_content(label: str, content: bytes) -> bytes:
    """RFC 9420 SignContent: what ``SignWithLabel`` signs."""
    return vec(b"MLS 1.0 " + label.encode()) + vec(content)


def ref_hash(label: str, value: bytes) -> bytes:
    """RFC 9420 RefHash with SHA-256 (KeyPackageRef, ProposalRef)."""
    return hashlib.sha256(vec(label.encode()) + vec(value)).digest()


class SigningKey:
    """An ECDSA P-256 key pair (the external sender's, or a forger's)."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec

        self._key = ec.generate_private_key(ec.SECP256R1())

    @property
    def public_bytes(self) -> bytes:
        """Uncompressed SEC1 point: MLS's SignaturePublicKey for P-256."""
        from cryptography.hazmat.primitives import serialization

        return self._key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    def sign_with_label(self, label: str, content: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        return self._key.sign(sign_content(label, content), ec.ECDSA(hashes.SHA256()))


def verify_with_label(public_key: bytes, label: str, content: bytes, signature: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_key)
        key.verify(signature, sign_content(label, content), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


# -- credentials, leaf nodes, key packages --------------------------------------------


def basic_credential(identity: bytes) -> bytes:
    return struct.pack(">H", BASIC_CREDENTIAL) + vec(identity)


def user_identity(user_id: int) -> bytes:
    """DAVE's basic credential identity: the snowflake as a big-endian u64."""
    return user_id.to_bytes(8, "big")


def external_sender(signature_key: bytes, identity: bytes) -> bytes:
    """RFC 9420 ExternalSender: the op 25 payload."""
    return vec(signature_key) + basic_credential(identity)


@dataclass(frozen=True)
class LeafNode:
    encryption_key: bytes
    signature_key: bytes
    identity: bytes  # basic credential identity
    source: int
    lifetime: tuple[int, int] | None
    tbs: bytes  # the signed part (without group id / leaf index for update/commit)
    signature: bytes

    @property
    def user_id(self) -> int | None:
        return int.from_bytes(self.identity, "big") if len(self.identity) == 8 else None


def read_leaf_node(r: Reader) -> LeafNode:
    start = r.pos
    encryption_key = r.vec()
    signature_key = r.vec()
    credential_type = r.u16()
    if credential_type != BASIC_CREDENTIAL:
        raise MlsError(f"credential type {credential_type}: DAVE allows basic only")
    identity = r.vec()
    for _ in range(5):  # capabilities: versions, ciphersuites, extensions, proposals, credentials
        r.vec()
    source = r.u8()
    lifetime = None
    if source == FROM_KEY_PACKAGE:
        lifetime = (r.u64(), r.u64())
    elif source == FROM_COMMIT:
        r.vec()  # parent hash
    elif source != FROM_UPDATE:
        raise MlsError(f"leaf node source {source}")
    r.vec()  # extensions
    tbs = r.data[start : r.pos]
    return LeafNode(encryption_key, signature_key, identity, source, lifetime, tbs, r.vec())


@dataclass(frozen=True)
class KeyPackage:
    raw: bytes  # the encoded KeyPackage (what Add carries and KeyPackageRef hashes)
    ciphersuite: int
    leaf: LeafNode
    tbs: bytes
    signature: bytes

    @property
    def ref(self) -> bytes:
        return ref_hash("MLS 1.0 KeyPackage Reference", self.raw)

    @property
    def user_id(self) -> int | None:
        return self.leaf.user_id

    def problems(self, user_id: int) -> list[str]:
        """Why the voice gateway refuses this key package from ``user_id`` (empty: valid)."""
        out = []
        if self.ciphersuite != CIPHERSUITE:
            out.append(f"ciphersuite {self.ciphersuite}, not {CIPHERSUITE}")
        if self.leaf.user_id != user_id:
            out.append(f"credential identity {self.leaf.identity.hex()} is not user {user_id}")
        if self.leaf.source != FROM_KEY_PACKAGE or self.leaf.lifetime != MAX_LIFETIME:
            out.append(f"lifetime {self.leaf.lifetime}, not {MAX_LIFETIME}")
        key = self.leaf.signature_key
        if not verify_with_label(key, "KeyPackageTBS", self.tbs, self.signature):
            out.append("bad key package signature")
        if not verify_with_label(key, "LeafNodeTBS", self.leaf.tbs, self.leaf.signature):
            out.append("bad leaf node signature")
        return out


def read_key_package(r: Reader) -> KeyPackage:
    start = r.pos
    if r.u16() != MLS10:
        raise MlsError("not an MLS 1.0 key package")
    ciphersuite = r.u16()
    r.vec()  # init key
    leaf = read_leaf_node(r)
    r.vec()  # extensions
    tbs = r.data[start : r.pos]
    signature = r.vec()
    return KeyPackage(r.data[start : r.pos], ciphersuite, leaf, tbs, signature)


def parse_key_package(data: bytes) -> KeyPackage:
    """Op 26's payload: davey sends a bare KeyPackage; an MLSMessage wrapper is accepted too."""
    r = Reader(data)
    if data[2:4] == struct.pack(">H", KEY_PACKAGE):
        r.take(4)
    package = read_key_package(r)
    if not r.done:
        raise MlsError("trailing bytes after the key package")
    return package


# -- proposals from the external sender ---------------------------------------------------


def add_proposal(key_package: KeyPackage) -> bytes:
    return struct.pack(">H", ADD) + key_package.raw


def remove_proposal(leaf_index: int) -> bytes:
    return struct.pack(">HI", REMOVE, leaf_index)


def external_proposal_message(
    key: SigningKey, group_id: bytes, epoch: int, proposal: bytes
) -> bytes:
    """An MLSMessage (PublicMessage) carrying ``proposal``, signed as the external sender.

    The sender is ``external`` index 0, so FramedContentTBS has no group context
    and the message has no membership tag.
    """
    content = (
        vec(group_id)
        + struct.pack(">Q", epoch)
        + struct.pack(">BI", EXTERNAL, 0)
        + vec(b"")  # authenticated data
        + bytes([PROPOSAL])
        + proposal
    )
    wire = struct.pack(">H", PUBLIC_MESSAGE)
    tbs = struct.pack(">H", MLS10) + wire + content
    auth = vec(key.sign_with_label("FramedContentTBS", tbs))
    return struct.pack(">H", MLS10) + wire + content + auth


def proposal_ref(message: bytes) -> bytes:
    """ProposalRef of a PublicMessage proposal with no membership tag (an external one).

    AuthenticatedContent is wire_format + content + auth: the MLSMessage without
    its version.
    """
    return ref_hash("MLS 1.0 Proposal Reference", message[2:])


def proposals_payload(operation: int, items: list[bytes]) -> bytes:
    """Op 27's payload: operation type (0 append, 1 revoke), then one vector of items."""
    return bytes([operation]) + vec(b"".join(vec(i) if operation else i for i in items))


# -- commits and welcomes from members ------------------------------------------------------


@dataclass
class Commit:
    group_id: bytes
    epoch: int
    sender_leaf: int
    refs: list[bytes] = field(default_factory=list)
    inline_proposals: list[int] = field(default_factory=list)  # proposal types by value
    path_identity: bytes | None = None  # the committer's new leaf node, if any
    raw: bytes = b""


def _read_proposal(r: Reader) -> int:
    kind = r.u16()
    if kind == ADD:
        read_key_package(r)
    elif kind == REMOVE:
        r.u32()
    else:
        raise MlsError(f"proposal type {kind} by value")
    return kind


def read_commit_message(r: Reader) -> Commit:
    """One MLSMessage with a PublicMessage commit from a member."""
    start = r.pos
    version, wire = r.u16(), r.u16()
    if version != MLS10 or wire != PUBLIC_MESSAGE:
        raise MlsError(f"commit must be an MLS 1.0 PublicMessage (wire format {wire})")
    group_id = r.vec()
    epoch = r.u64()
    sender_type = r.u8()
    if sender_type != MEMBER:
        raise MlsError(f"commit sender type {sender_type}, not member")
    sender_leaf = r.u32()
    r.vec()  # authenticated data
    if r.u8() != COMMIT:
        raise MlsError("not a commit")
    commit = Commit(group_id, epoch, sender_leaf)
    proposals = r.sub()
    while not proposals.done:
        kind = proposals.u8()
        if kind == BY_REFERENCE:
            commit.refs.append(proposals.vec())
        elif kind == BY_VALUE:
            commit.inline_proposals.append(_read_proposal(proposals))
        else:
            raise MlsError(f"ProposalOrRef type {kind}")
    if r.u8():  # optional<UpdatePath>
        commit.path_identity = read_leaf_node(r).identity
        r.vec()  # UpdatePathNode nodes<V>
    r.vec()  # signature
    r.vec()  # confirmation tag
    r.vec()  # membership tag (sender is a member)
    commit.raw = r.data[start : r.pos]
    return commit


@dataclass(frozen=True)
class Welcome:
    ciphersuite: int
    secrets: list[tuple[bytes, bytes]]  # (new member KeyPackageRef, encoded EncryptedGroupSecrets)
    encrypted_group_info: bytes

    def for_member(self, ref: bytes) -> bytes | None:
        """The welcome with only ``ref``'s secrets (what op 30 carries), or None."""
        mine = [raw for new_member, raw in self.secrets if new_member == ref]
        if not mine:
            return None
        return (
            struct.pack(">H", self.ciphersuite)
            + vec(b"".join(mine))
            + vec(self.encrypted_group_info)
        )


def read_welcome(r: Reader) -> Welcome:
    ciphersuite = r.u16()
    secrets = r.sub()
    entries = []
    while not secrets.done:
        start = secrets.pos
        new_member = secrets.vec()
        secrets.vec()  # HPKE kem output
        secrets.vec()  # HPKE ciphertext
        entries.append((new_member, secrets.data[start : secrets.pos]))
    return Welcome(ciphersuite, entries, r.vec())


def parse_commit_welcome(data: bytes) -> tuple[Commit, Welcome | None]:
    """Op 28's payload: an MLSMessage commit, then (if it adds members) a Welcome.

    The welcome is a bare Welcome per the DAVE spec (1.1.2); an MLSMessage-wrapped
    one is accepted too.
    """
    r = Reader(data)
    commit = read_commit_message(r)
    if r.done:
        return commit, None
    rest = r.rest()
    if rest[:4] == struct.pack(">HH", MLS10, WELCOME):
        r.take(4)
    welcome = read_welcome(r)
    if not r.done:
        raise MlsError("trailing bytes after the welcome")
    return commit, welcome


def describe(data: Any) -> str:
    """A short hex preview for error messages."""
    raw = bytes(data)
    return raw[:16].hex() + ("..." if len(raw) > 16 else "")
