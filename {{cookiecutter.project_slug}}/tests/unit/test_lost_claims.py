"""Claims sent without an answer (worker.claim.LostClaims): which token the next claim takes, and
what the worker believes of its idle-set entry after one."""

import asyncio
from typing import cast

from {{ cookiecutter.package_name }}.worker.claim import Claimer, LostClaims
from {{ cookiecutter.package_name }}.worker.handoff import IdleRegistration


def test_a_lost_claims_jobs_go_again_under_its_token_and_alone() -> None:
    claims = LostClaims(lifetime_s=60)
    claims.lost("t1", ["a", "b"])

    token, again = claims.next_claim(["x", "b", "a", "y"])
    fresh, others = claims.next_claim(["x", "y"])

    assert (token, again) == ("t1", ["b", "a"])  # (in the order asked)
    assert fresh != "t1"
    assert others == ["x", "y"]


def test_a_token_is_forgotten_once_each_of_its_jobs_is_answered_for() -> None:
    claims = LostClaims(lifetime_s=60)
    claims.lost("t1", ["a", "b"])

    claims.answered("t1", ["a"])
    token, again = claims.next_claim(["a", "b"])
    claims.answered("t1", ["b"])

    assert (token, again) == ("t1", ["b"])
    assert len(claims) == 0
    assert claims.next_claim(["a", "b"])[0] != "t1"


def test_a_resend_lost_again_keeps_its_token_and_a_lost_claim_expires() -> None:
    claims = LostClaims(lifetime_s=60)
    claims.lost("t1", ["a"])
    claims.lost("t1", ["a"])  # (its resend, lost too)
    assert claims.next_claim(["a"]) == ("t1", ["a"])

    expired = LostClaims(lifetime_s=0)  # its claims have expired: a new claim, a new token
    expired.lost("t1", ["a"])
    assert expired.next_claim(["a"])[0] != "t1"
    assert len(expired) == 0


class HeldRegistration:
    """A stand-in for the claimer (no Redis): its registration is answered when told."""

    def __init__(self) -> None:
        self.answer = asyncio.Event()

    async def register(self, member: str) -> int:
        await self.answer.wait()
        return 1_800_000_000_000


async def test_a_claim_unanswered_while_the_worker_registers_leaves_its_entry_in_doubt() -> None:
    """Redis may run the lost claim (which takes the entry out) after the registration: the
    registration's answer does not make the worker take itself for registered."""
    registration = IdleRegistration("queue", 60_000, aborts=True)
    claimer = HeldRegistration()
    registering = asyncio.create_task(registration.register(cast("Claimer", claimer)))
    await asyncio.sleep(0)  # (the registration sent)

    registration.doubt()
    claimer.answer.set()
    await registering

    assert registration.held is None
    assert registration.due()
