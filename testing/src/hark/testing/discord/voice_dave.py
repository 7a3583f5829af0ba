"""DAVE on the loopback voice server: the voice gateway as MLS delivery service.

One :class:`DaveCall` per voice channel plays the part Discord's voice gateway
plays in the DAVE protocol (https://daveprotocol.com, protocol v1): it is the
group's external sender and delivery service, never a member.

- Everyone who connects with DAVE support is told ``dave_protocol_version`` 1
  and gets the external sender package (op 25); they answer with a key package
  (op 26), which is verified (signature, basic credential = their user id,
  lifetime, ciphersuite).
- While no group is established, each pending member gets external Add
  proposals (op 27) for the pending members that arrived after it; the first
  valid commit (op 28) creates the group. Afterwards all group members get the
  proposals (Adds for joiners, Removes for leaves that left) and all may commit.
- The first valid commit for the current epoch wins; later ones (or ones for
  another epoch) are ignored. The winner's commit is announced (op 29) to the
  members it was made for, committer included, and each joiner gets its own cut
  of the welcome (op 30). Both carry a transition id; when everyone said they
  are ready (op 23) or after ``transition_timeout``, op 22 executes it.
- Proposals go out as one batch per epoch, and the next batch only after the
  previous transition executed: davey 0.1.7 (discord.py's DAVE) drops the
  welcome when it redoes a commit after a second batch without an Add.
- A pending member leaving (or replacing its key package) gets its in-flight
  Add revoked. When one member is left in an established group it gets the
  sole-member reset (op 24 epoch 1, op 21 transition 0); when nobody is, the
  group is simply forgotten.
- DAVE switched off (or a client without DAVE joining) downgrades the call to
  transport-only encryption (op 21 version 0, op 23, op 22); switching it back
  on (or that client leaving) upgrades it (op 24 epoch 1: a new group).

Participants are the bot's voice connection and the fake members' clients
(:mod:`.voice_member`), both behind :class:`DaveEndpoint`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from . import dave_mls as mls

log = logging.getLogger(__name__)

DAVE_VERSION = 1
# Voice opcodes of the DAVE protocol.
PREPARE_TRANSITION = 21
EXECUTE_TRANSITION = 22
READY_FOR_TRANSITION = 23
PREPARE_EPOCH = 24
MLS_EXTERNAL_SENDER = 25
MLS_KEY_PACKAGE = 26
MLS_PROPOSALS = 27
MLS_COMMIT_WELCOME = 28
MLS_ANNOUNCE_COMMIT_TRANSITION = 29
MLS_WELCOME = 30
MLS_INVALID_COMMIT_WELCOME = 31

APPEND, REVOKE = 0, 1
GATEWAY_IDENTITY = b"\x00" * 8  # the external sender's basic credential (any bytes do)


class DaveEndpoint(Protocol):
    """How the call reaches one participant (the bot's voice socket or a fake client)."""

    user_id: int

    def dave_send_json(self, op: int, data: dict[str, object]) -> None: ...

    def dave_send_binary(self, op: int, payload: bytes) -> None: ...

    # CLIENTS_CONNECT (op 11) / CLIENT_DISCONNECT (op 13) for this participant, in
    # order with the DAVE messages (the bot gets them from the voice server itself).
    def dave_client_connect(self, user_id: int) -> None: ...

    def dave_client_disconnect(self, user_id: int) -> None: ...


@dataclass
class KeyPackageRecord:
    at: float
    user_id: int
    accepted: bool
    problems: list[str]


@dataclass
class CommitRecord:
    """An op 28 the call received: ``accepted`` or why not (``reason``)."""

    at: float
    user_id: int
    epoch: int | None
    accepted: bool
    reason: str = ""
    transition_id: int | None = None
    added: list[int] = field(default_factory=list)  # user ids
    removed: list[int] = field(default_factory=list)  # leaf indexes


@dataclass
class TransitionRecord:
    """A DAVE transition: a commit's epoch change, a downgrade, an upgrade or a reset."""

    transition_id: int
    kind: str  # "commit", "downgrade", "upgrade", "reset"
    protocol_version: int
    epoch: int
    participants: set[int]
    ready: set[int] = field(default_factory=set)
    prepared_at: float = field(default_factory=time.monotonic)
    executed_at: float | None = None
    timed_out: bool = False

    @property
    def executed(self) -> bool:
        return self.executed_at is not None


@dataclass(eq=False)
class CallMember:
    """One participant as the voice gateway sees it."""

    endpoint: DaveEndpoint
    supports_dave: bool
    version: int = 0  # what this participant was told (session description, op 24)
    key_package: mls.KeyPackage | None = None
    key_package_seq: int = 0  # arrival order: earlier pending members commit first
    leaf: int | None = None  # leaf index in the established group
    has_external_sender: bool = False

    @property
    def user_id(self) -> int:
        return self.endpoint.user_id


@dataclass
class SentProposal:
    message: bytes
    ref: bytes
    kind: int  # mls.ADD or mls.REMOVE
    user_id: int | None  # for Add: whose key package; for Remove: who held the leaf
    key_package: mls.KeyPackage | None = None
    leaf: int | None = None


class DaveCall:
    """The DAVE state of one voice channel (see the module docstring)."""

    def __init__(
        self,
        guild_id: int,
        channel_id: int,
        *,
        enabled: bool,
        transition_timeout: float = 2.0,
        on_change: Callable[[], None] = lambda: None,
        on_error: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.guild_id = guild_id
        self.channel_id = channel_id
        self.group_id = channel_id.to_bytes(8, "big")  # davey's MLS group id
        self.enabled = enabled
        self.transition_timeout = transition_timeout
        self._on_change = on_change
        self._on_error = on_error
        self.signing_key = mls.SigningKey()
        self.external_sender = mls.external_sender(self.signing_key.public_bytes, GATEWAY_IDENTITY)
        self.members: dict[int, CallMember] = {}  # connected participants by user id
        self.protocol_version = DAVE_VERSION if enabled else 0
        self.epoch = 0  # 0: no established group
        self.leaves: list[int | None] = []  # user id at each leaf index
        self.in_flight: dict[int, list[SentProposal]] = {}  # recipient -> this epoch's batch
        self.key_packages: list[KeyPackageRecord] = []
        self.commits: list[CommitRecord] = []
        self.transitions: list[TransitionRecord] = []
        self.invalid_reports: list[tuple[int, int]] = []  # op 31: (user id, transition id)
        self.proposals_sent: list[tuple[int, int, int]] = []  # (recipient, epoch, operation)
        self.commit_winner: int | None = None  # see let_commit_win
        self.commit_hold_timeout = 5.0
        self._held: list[tuple[int, bytes]] = []
        self._held_timer: asyncio.TimerHandle | None = None
        self._pending: TransitionRecord | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._next_transition = 0
        self._seq = 0
        self._messages: dict[tuple[bytes, int], bytes] = {}  # (package ref, epoch) -> its Add

    # -- what tests read ---------------------------------------------------------------

    @property
    def established(self) -> bool:
        return self.protocol_version == DAVE_VERSION and self.epoch > 0

    @property
    def group(self) -> dict[int, int]:
        """User id -> leaf index of the group's members, as the gateway tracks them."""
        return {u: i for i, u in enumerate(self.leaves) if u is not None}

    @property
    def pending_transition(self) -> TransitionRecord | None:
        return self._pending

    def settled(self) -> bool:
        """DAVE on, everyone with DAVE in the group, last transition executed by all."""
        if self.protocol_version != DAVE_VERSION or self._pending is not None:
            return False
        dave = {u for u, m in self.members.items() if m.supports_dave}
        if len(dave) < 2:
            return False
        if not self.established or set(self.group) != dave:
            return False
        if any(m.leaf != self.group[u] for u, m in self.members.items() if u in dave):
            return False
        last = self.transitions[-1] if self.transitions else None
        # A transition that timed out counts once the late ones said ready after all
        # (a slow bot under load is not a broken one).
        return (
            last is not None
            and last.executed
            and (last.participants & set(self.members)) <= last.ready
        )

    def let_commit_win(self, user_id: int | None, *, timeout: float = 5.0) -> None:
        """Hold other members' commits until ``user_id``'s commit for the epoch is accepted.

        Lets a test decide the commit race (the bot's commit wins, or a member's
        does). Held commits are then processed, and ignored as stale; they are
        released anyway after ``timeout`` seconds, or at once when ``user_id`` has
        no proposals to commit in this epoch. ``None`` turns this off.
        """
        self.commit_winner = user_id
        self.commit_hold_timeout = timeout
        if user_id is None:
            self._release_held()

    def connected_user_ids(self) -> list[int]:
        return sorted(self.members)

    # -- participants coming and going --------------------------------------------------

    def join(self, endpoint: DaveEndpoint, *, supports_dave: bool) -> int:
        """A participant connected; returns the DAVE protocol version to tell it."""
        if endpoint.user_id in self.members:
            self.leave(endpoint.user_id)
        for other in self.members.values():
            other.endpoint.dave_client_connect(endpoint.user_id)
        member = CallMember(endpoint, supports_dave)
        self.members[endpoint.user_id] = member
        if self.protocol_version == DAVE_VERSION and not self._wanted_version():
            self._downgrade()
        member.version = (
            DAVE_VERSION
            if supports_dave and self.protocol_version == DAVE_VERSION and not self._downgrading
            else 0
        )
        self._on_change()
        return member.version

    def start(self, user_id: int) -> None:
        """After the session description: the external sender package, then proposals."""
        member = self.members.get(user_id)
        if member is None or member.version != DAVE_VERSION:
            return
        self._send_external_sender(member)
        self._reconcile()

    def leave(self, user_id: int) -> None:
        member = self.members.pop(user_id, None)
        if member is None:
            return
        for other in self.members.values():
            other.endpoint.dave_client_disconnect(user_id)
        self.in_flight.pop(user_id, None)
        if member.key_package is not None:
            self._revoke(member.key_package)
        if self._pending is not None:
            self._pending.participants.discard(user_id)
            self._check_ready()
        if self.protocol_version == 0 and self._wanted_version() and not self._downgrading:
            self._upgrade()
        self._reconcile()
        self._on_change()

    def set_enabled(self, enabled: bool) -> None:
        """Switch DAVE on or off for this call: an upgrade or a downgrade when it changes."""
        self.enabled = enabled
        wanted = self._wanted_version()
        if not self.members:  # nobody to tell: the next ones are simply told the version
            self.protocol_version = DAVE_VERSION if wanted else 0
        elif wanted and self.protocol_version == 0 and not self._downgrading:
            self._upgrade()
        elif not wanted and self.protocol_version == DAVE_VERSION and not self._downgrading:
            self._downgrade()
        self._on_change()

    def _wanted_version(self) -> bool:
        return self.enabled and all(m.supports_dave for m in self.members.values())

    @property
    def _downgrading(self) -> bool:
        return self._pending is not None and self._pending.kind == "downgrade"

    # -- messages from participants -------------------------------------------------------

    def on_key_package(self, user_id: int, payload: bytes) -> None:
        member = self.members.get(user_id)
        if member is None or member.version != DAVE_VERSION:
            return
        try:
            package = mls.parse_key_package(payload)
            problems = package.problems(user_id)
        except mls.MlsError as exc:
            package, problems = None, [str(exc)]
        self.key_packages.append(
            KeyPackageRecord(time.monotonic(), user_id, not problems, problems)
        )
        if package is None or problems:
            log.warning("fake voice gateway refused a key package from %s: %s", user_id, problems)
            return
        if member.key_package is not None:
            self._revoke(member.key_package)  # one key package per pending member
        if member.leaf is not None:
            member.leaf = None  # a fresh key package: the old leaf is removed, the new one added
        self._seq += 1
        member.key_package, member.key_package_seq = package, self._seq
        self._reconcile()
        self._on_change()

    def on_commit_welcome(self, user_id: int, payload: bytes) -> None:
        if (
            self.commit_winner is not None
            and user_id != self.commit_winner
            and self.commit_winner in self.in_flight
        ):
            self._held.append((user_id, payload))
            if self._held_timer is None:
                loop = asyncio.get_running_loop()
                self._held_timer = loop.call_later(self.commit_hold_timeout, self._release_held)
            return
        self._commit(user_id, payload)
        self._on_change()

    def on_ready(self, user_id: int, transition_id: int) -> None:
        pending = self._pending
        if pending is not None and pending.transition_id == transition_id:
            pending.ready.add(user_id)
            self._check_ready()
        else:  # late, after a timeout: recorded, nothing to execute any more
            for record in reversed(self.transitions[-5:]):
                if record.transition_id == transition_id and record.executed:
                    record.ready.add(user_id)
                    break
        self._on_change()

    def on_invalid_commit_welcome(self, user_id: int, transition_id: int) -> None:
        """Op 31: the member is removed and re-added once its new key package comes."""
        self.invalid_reports.append((user_id, transition_id))
        member = self.members.get(user_id)
        if member is not None:
            member.leaf = None
        if self._pending is not None:
            self._pending.participants.discard(user_id)
            self._check_ready()
        self._reconcile()
        self._on_change()

    # -- commits -------------------------------------------------------------------------

    def _ignore(self, user_id: int, epoch: int | None, reason: str) -> None:
        log.info("fake voice gateway ignored a commit from %s: %s", user_id, reason)
        self.commits.append(CommitRecord(time.monotonic(), user_id, epoch, False, reason))

    def _commit(self, user_id: int, payload: bytes) -> None:
        member = self.members.get(user_id)
        if member is None or self.protocol_version != DAVE_VERSION or self._downgrading:
            self._ignore(user_id, None, "DAVE is off or the sender is not in the call")
            return
        try:
            commit, welcome = mls.parse_commit_welcome(payload)
        except mls.MlsError as exc:
            self._ignore(user_id, None, f"malformed: {exc}")
            return
        if commit.epoch != self.epoch:
            self._ignore(user_id, commit.epoch, f"for epoch {commit.epoch}, not {self.epoch}")
            return
        sent = self.in_flight.get(user_id)
        if not sent:
            self._ignore(user_id, commit.epoch, "no proposals were sent to it in this epoch")
            return
        expected_leaf = 0 if not self.established else member.leaf
        problem = None
        if commit.group_id != self.group_id:
            problem = f"group id {commit.group_id.hex()}"
        elif commit.sender_leaf != expected_leaf:
            problem = f"sender leaf {commit.sender_leaf}, not {expected_leaf}"
        elif commit.inline_proposals:
            problem = f"proposals by value {commit.inline_proposals}"
        elif sorted(commit.refs) != sorted(p.ref for p in sent):
            problem = "it does not reference exactly this epoch's proposals"
        elif commit.path_identity not in (None, mls.user_identity(user_id)):
            problem = "its update path changes the committer's credential"
        adds = [p for p in sent if p.kind == mls.ADD]
        if problem is None and adds and welcome is None:
            problem = "it adds members but has no welcome"
        if problem is not None:
            self._ignore(user_id, commit.epoch, problem)
            return
        self._accept(member, commit, welcome, sent)

    def _accept(
        self,
        committer: CallMember,
        commit: mls.Commit,
        welcome: mls.Welcome | None,
        sent: list[SentProposal],
    ) -> None:
        by_ref = {p.ref: p for p in sent}
        ordered = [by_ref[r] for r in commit.refs]
        if not self.established:
            self.leaves = [committer.user_id]
            committer.leaf = 0
            committer.key_package = None  # the creator's package is never proposed again
        # Op 29 goes to the members the commit was made for (committer included),
        # not to members whose leaf is being replaced: they are welcomed instead.
        group = self.group
        announced = [
            m for u, m in self.members.items() if m.leaf is not None and group.get(u) == m.leaf
        ]
        removed = []
        for proposal in ordered:  # RFC 9420 12.3: removes before adds
            if proposal.kind == mls.REMOVE and proposal.leaf is not None:
                self.leaves[proposal.leaf] = None
                removed.append(proposal.leaf)
        added: list[tuple[CallMember | None, SentProposal]] = []
        for proposal in ordered:
            if proposal.kind != mls.ADD or proposal.user_id is None:
                continue
            index = next((i for i, u in enumerate(self.leaves) if u is None), len(self.leaves))
            if index == len(self.leaves):
                self.leaves.append(proposal.user_id)
            else:
                self.leaves[index] = proposal.user_id
            joiner = self.members.get(proposal.user_id)
            if joiner is not None and joiner.key_package is proposal.key_package:
                joiner.leaf, joiner.key_package = index, None
                added.append((joiner, proposal))
            else:
                added.append((None, proposal))  # gone or replaced: removed next epoch
        while self.leaves and self.leaves[-1] is None:
            self.leaves.pop()
        self.epoch += 1
        self.in_flight.clear()
        transition_id = self._new_transition_id()
        joiners = [m for m, _ in added if m is not None]
        record = TransitionRecord(
            transition_id,
            "commit",
            DAVE_VERSION,
            self.epoch,
            {m.user_id for m in announced} | {m.user_id for m in joiners},
        )
        self.commits.append(
            CommitRecord(
                time.monotonic(),
                committer.user_id,
                commit.epoch,
                True,
                transition_id=transition_id,
                added=[p.user_id for _, p in added if p.user_id is not None],
                removed=removed,
            )
        )
        self._begin(record)
        header = transition_id.to_bytes(2, "big")
        for member in announced:
            member.endpoint.dave_send_binary(MLS_ANNOUNCE_COMMIT_TRANSITION, header + commit.raw)
        for joiner, proposal in added:
            assert proposal.key_package is not None
            piece = welcome.for_member(proposal.key_package.ref) if welcome else None
            if joiner is None:
                continue
            if piece is None:
                self._on_error(f"DAVE welcome has no secrets for user {joiner.user_id}")
                continue
            joiner.endpoint.dave_send_binary(MLS_WELCOME, header + piece)
        if self.commit_winner == committer.user_id:
            self._release_held()

    def _release_held(self) -> None:
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None
        held, self._held = self._held, []
        for user_id, payload in held:
            self._commit(user_id, payload)
        self._on_change()

    # -- transitions ----------------------------------------------------------------------

    def _new_transition_id(self) -> int:
        self._next_transition = self._next_transition % 0xFFFF + 1  # u16, never 0
        return self._next_transition

    def _begin(self, record: TransitionRecord) -> None:
        if self._pending is not None:  # a newer transition supersedes it
            self._execute(self._pending, timed_out=True)
        self.transitions.append(record)
        self._pending = record
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.transition_timeout, self._timeout, record)
        self._check_ready()

    def _timeout(self, record: TransitionRecord) -> None:
        if self._pending is record:
            log.info("fake voice gateway: transition %d timed out", record.transition_id)
            self._execute(record, timed_out=True)
            self._reconcile()
            self._on_change()

    def _check_ready(self) -> None:
        pending = self._pending
        if pending is not None and pending.participants <= pending.ready:
            loop = asyncio.get_running_loop()
            # Not inline: the op 23 that completed it is still being handled.
            loop.call_soon(self._execute_if_pending, pending)

    def _execute_if_pending(self, record: TransitionRecord) -> None:
        if self._pending is record:
            self._execute(record, timed_out=False)
            self._reconcile()
            self._on_change()

    def _execute(self, record: TransitionRecord, *, timed_out: bool) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending = None
        record.executed_at = time.monotonic()
        record.timed_out = timed_out
        data = {"transition_id": record.transition_id}
        for user_id in sorted(record.participants):
            member = self.members.get(user_id)
            if member is not None:
                member.endpoint.dave_send_json(EXECUTE_TRANSITION, data)
        if record.kind == "downgrade":
            self.protocol_version = 0
            self._forget_group(keep_packages=False)
            for member in self.members.values():
                member.version = 0
            if self._wanted_version():  # switched back on while downgrading
                self._upgrade()

    def _forget_group(self, *, keep_packages: bool) -> None:
        """No established group any more. Pending members keep their key packages
        unless everyone starts over (``keep_packages=False``: they all send new ones)."""
        self.epoch = 0
        self.leaves = []
        self.in_flight.clear()
        for member in self.members.values():
            if member.leaf is not None or not keep_packages:
                member.key_package = None
            member.leaf = None

    def _downgrade(self) -> None:
        transition_id = self._new_transition_id()
        dave = {u for u, m in self.members.items() if m.version == DAVE_VERSION}
        record = TransitionRecord(transition_id, "downgrade", 0, self.epoch, dave)
        self.in_flight.clear()
        if self._pending is not None:
            self._execute(self._pending, timed_out=True)
        for user_id in sorted(dave):
            self.members[user_id].endpoint.dave_send_json(
                PREPARE_TRANSITION, {"transition_id": transition_id, "protocol_version": 0}
            )
        self._begin(record)

    def _upgrade(self) -> None:
        """A new group for everyone: op 24 epoch 1; the commit transition does the switch."""
        self.protocol_version = DAVE_VERSION
        self._forget_group(keep_packages=False)
        record = TransitionRecord(0, "upgrade", DAVE_VERSION, 1, set(self.members))
        record.executed_at = time.monotonic()
        self.transitions.append(record)
        for member in self.members.values():
            member.version = DAVE_VERSION
            member.endpoint.dave_send_json(
                PREPARE_EPOCH, {"protocol_version": DAVE_VERSION, "epoch": 1}
            )
            self._send_external_sender(member)

    def _sole_member_reset(self, member: CallMember) -> None:
        self._forget_group(keep_packages=True)
        record = TransitionRecord(0, "reset", DAVE_VERSION, 1, {member.user_id})
        record.executed_at = time.monotonic()
        self.transitions.append(record)
        member.endpoint.dave_send_json(
            PREPARE_EPOCH, {"protocol_version": DAVE_VERSION, "epoch": 1}
        )
        member.endpoint.dave_send_json(
            PREPARE_TRANSITION, {"transition_id": 0, "protocol_version": DAVE_VERSION}
        )
        # Its session was reset by op 24: it needs the external sender again.
        self._send_external_sender(member)

    # -- proposals ------------------------------------------------------------------------

    def _send_external_sender(self, member: CallMember) -> None:
        member.endpoint.dave_send_binary(MLS_EXTERNAL_SENDER, self.external_sender)
        member.has_external_sender = True

    def _add_message(self, package: mls.KeyPackage) -> bytes:
        # One message per key package and epoch: the same ref for every recipient.
        key = (package.ref, self.epoch)
        if key not in self._messages:
            self._messages[key] = mls.external_proposal_message(
                self.signing_key, self.group_id, self.epoch, mls.add_proposal(package)
            )
        return self._messages[key]

    def _send(self, recipients: list[CallMember], batch: list[SentProposal]) -> None:
        payload = mls.proposals_payload(APPEND, [p.message for p in batch])
        for member in recipients:
            self.in_flight[member.user_id] = list(batch)
            self.proposals_sent.append((member.user_id, self.epoch, APPEND))
            member.endpoint.dave_send_binary(MLS_PROPOSALS, payload)

    def _revoke(self, package: mls.KeyPackage) -> None:
        """Take back an in-flight Add: its member left or sent a newer key package."""
        for user_id, batch in list(self.in_flight.items()):
            refs = [p.ref for p in batch if p.key_package is package]
            if not refs:
                continue
            batch[:] = [p for p in batch if p.key_package is not package]
            if not batch:
                del self.in_flight[user_id]
            self.proposals_sent.append((user_id, self.epoch, REVOKE))
            self.members[user_id].endpoint.dave_send_binary(
                MLS_PROPOSALS, mls.proposals_payload(REVOKE, refs)
            )

    def _reconcile(self) -> None:
        """Send what the group needs next, if anything: one batch per epoch."""
        if self.protocol_version != DAVE_VERSION or self._pending is not None or self.in_flight:
            return
        if self.established:
            group = self.group
            in_group = [
                m for u, m in self.members.items() if m.leaf is not None and group.get(u) == m.leaf
            ]
            if not in_group:
                # Everyone left: whoever is pending starts a new group.
                self._forget_group(keep_packages=True)
            elif len(in_group) == 1 and len(group) > 1:
                self._sole_member_reset(in_group[0])
                return
            else:
                self._propose(in_group)
                return
        self._propose_initial()

    def _propose(self, committers: list[CallMember]) -> None:
        batch = []
        for index, user_id in enumerate(self.leaves):
            member = self.members.get(user_id) if user_id is not None else None
            if user_id is not None and (member is None or member.leaf != index):
                message = mls.external_proposal_message(
                    self.signing_key, self.group_id, self.epoch, mls.remove_proposal(index)
                )
                ref = mls.proposal_ref(message)
                batch.append(SentProposal(message, ref, mls.REMOVE, user_id, leaf=index))
        batch += [self._add(m) for m in self._joiners()]
        if batch:
            self._send(committers, batch)

    def _propose_initial(self) -> None:
        pending = [m for m in self._joiners() if m.has_external_sender]
        for index, member in enumerate(pending):
            later = pending[index + 1 :]
            if later:
                self._send([member], [self._add(m) for m in later])

    def _joiners(self) -> list[CallMember]:
        waiting = [m for m in self.members.values() if m.key_package is not None and m.leaf is None]
        return sorted(waiting, key=lambda m: m.key_package_seq)

    def _add(self, member: CallMember) -> SentProposal:
        assert member.key_package is not None
        message = self._add_message(member.key_package)
        return SentProposal(
            message, mls.proposal_ref(message), mls.ADD, member.user_id, member.key_package
        )

    # -- test tools -----------------------------------------------------------------------

    def forge_proposal(self, recipients: list[int] | None = None, *, user_id: int = 1) -> bytes:
        """Send members an Add proposal signed with the wrong key (not the external sender's).

        Clients must refuse it. The key package is a real one (a fresh davey
        session for ``user_id``), so only the signature gives it away. Goes to
        ``recipients`` (user ids), by default every DAVE participant. Returns
        the forged MLSMessage.
        """
        import davey

        package = mls.parse_key_package(
            davey.DaveSession(DAVE_VERSION, user_id, self.channel_id).get_serialized_key_package()
        )
        message = mls.external_proposal_message(
            mls.SigningKey(), self.group_id, self.epoch, mls.add_proposal(package)
        )
        payload = mls.proposals_payload(APPEND, [message])
        targets = recipients if recipients is not None else sorted(self.members)
        for target in targets:
            member = self.members.get(target)
            if member is not None and member.version == DAVE_VERSION:
                member.endpoint.dave_send_binary(MLS_PROPOSALS, payload)
        return message

    def close(self) -> None:
        for handle in (self._timer, self._held_timer):
            if handle is not None:
                handle.cancel()
        self._timer = self._held_timer = None
