"""The locker kind's command arguments."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field, model_validator

from edge.devices.lockers import pickup
from edge.models import Payload


class LockerOpenArgs(Payload):
    locker: int = Field(ge=1)
    reason: Literal["deposit", "pickup", "service"]


class PickupCodeHash(Payload):
    """A pickup code hashed by the centre: scrypt(code, salt, n, r, p), 32 bytes."""

    alg: Literal["scrypt"]
    n: int = Field(ge=pickup.N_MIN, le=pickup.N_MAX, description="scrypt cost N, a power of two.")
    r: int = Field(ge=1, le=pickup.R_MAX, description="scrypt block size r.")
    p: int = Field(ge=1, le=pickup.P_MAX, description="scrypt parallelism p.")
    salt: str = Field(
        min_length=24,
        max_length=88,
        pattern=r"^[A-Za-z0-9+/]+={0,2}$",
        description="Standard base64 (with padding) of 16 to 64 random bytes, new per code.",
    )
    hash: str = Field(
        pattern=r"^[A-Za-z0-9+/]{43}=$", description="Standard base64 of the 32-byte output."
    )

    @model_validator(mode="after")
    def _check(self) -> PickupCodeHash:
        # Bounds on the cost (128*n*r <= 32 MiB, 2^13 <= n*r*p <= 2^18), the salt length.
        pickup.CodeHash.from_json(self.model_dump())
        return self


class LockerAssignArgs(Payload):
    locker: int = Field(ge=1)
    parcel_id: str = Field(min_length=1, max_length=64)
    pickup_code: str | None = Field(
        None,
        min_length=pickup.CODE_MIN_LEN,
        max_length=pickup.CODE_MAX_LEN,
        pattern=r"^[A-Za-z0-9]+$",
        repr=False,
        description="The code in clear (6-32 letters and digits): the site hashes it and "
        "keeps only the hash. Exactly one of pickup_code and pickup_code_hash.",
    )
    pickup_code_hash: PickupCodeHash | None = Field(
        None,
        description="The code already hashed by the centre, so the code never crosses the "
        "broker. Exactly one of pickup_code and pickup_code_hash.",
    )
    deposited_at: AwareDatetime | None = Field(
        None, description="Set when the parcel is already in (storage time counts from it)."
    )

    @model_validator(mode="after")
    def _one_code(self) -> LockerAssignArgs:
        if (self.pickup_code is None) == (self.pickup_code_hash is None):
            raise ValueError("give exactly one of pickup_code and pickup_code_hash")
        return self


class LockerReleaseArgs(Payload):
    locker: int = Field(ge=1)


class LockerServiceArgs(Payload):
    locker: int = Field(ge=1)
    in_service: bool


class LockerStatusArgs(Payload):
    pass
