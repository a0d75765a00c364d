"""Azure ML's rules for an online endpoint's traffic and mirror traffic, checked before anything changes.

Azure's service refuses these when the endpoint is updated; localml checks them before it starts or stops a
process, and the deploy tasks can check a rollout step before they send it. Deployment names are compared in
lower case, as the SDK writes the traffic map (``_strip_zeroes_from_traffic``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from amlkit.errors import SpecError

#: Azure copies at most half of an endpoint's requests to its mirror deployment.
MAX_MIRROR_PERCENT = 50


def normalized(traffic: Mapping[str, object] | None, what: str, endpoint: str) -> dict[str, int]:
    """``traffic`` as the SDK sends it: names in lower case, percentages as ints, zeros dropped."""
    shares = {}
    for name, value in (traffic or {}).items():
        try:
            percent = int(value)  # the SDK takes "80" as well as 80
        except (TypeError, ValueError):
            raise SpecError(f"Endpoint '{endpoint}': {what} for '{name}' is {value!r}; give a whole percentage from 0 to 100.") from None
        if not 0 <= percent <= 100:
            raise SpecError(f"Endpoint '{endpoint}': {what} for '{name}' is {percent}; give a whole percentage from 0 to 100.")
        if percent:
            shares[str(name).lower()] = percent
    return shares


def check_traffic(endpoint: str, traffic: Mapping | None, mirror_traffic: Mapping | None, deployments: Iterable[str]) -> tuple[dict, dict]:
    """The endpoint's traffic and mirror traffic, normalized, if Azure would take them; else a ``SpecError`` saying what to change.

    Traffic sums to 100 (or 0: no live traffic) over deployments the endpoint has. Mirror traffic goes to one of
    them, at most ``MAX_MIRROR_PERCENT`` percent, and never to a deployment that takes live traffic.
    """
    live = normalized(traffic, "traffic", endpoint)
    mirror = normalized(mirror_traffic, "mirror traffic", endpoint)
    existing = sorted(name.lower() for name in deployments)
    known = ", ".join(existing) if existing else "none yet: create one with online_deployments.begin_create_or_update"
    for name in [*live, *mirror]:
        if name not in existing:
            raise SpecError(f"Endpoint '{endpoint}' has no deployment '{name}' to send traffic to (its deployments: {known}). "
                            "Create the deployment first, then set the endpoint's traffic.")
    total = sum(live.values())
    if total not in (0, 100):
        shares = ", ".join(f"{name}: {percent}" for name, percent in live.items())
        raise SpecError(f"Endpoint '{endpoint}': traffic must sum to 100 (or 0 for none), and {{{shares}}} sums to {total}. "
                        "Change the percentages so they add up to 100.")
    if len(mirror) > 1:
        raise SpecError(f"Endpoint '{endpoint}': mirror traffic goes to one deployment, and {sorted(mirror)} are {len(mirror)}. "
                        "Mirror to one deployment at a time.")
    for name, percent in mirror.items():
        if percent > MAX_MIRROR_PERCENT:
            raise SpecError(f"Endpoint '{endpoint}': mirror traffic to '{name}' is {percent}%, and Azure mirrors at most "
                            f"{MAX_MIRROR_PERCENT}%. Lower it to {MAX_MIRROR_PERCENT} or less.")
        if name in live:
            raise SpecError(f"Endpoint '{endpoint}': '{name}' takes {live[name]}% of the live traffic, so it cannot take mirror "
                            "traffic too. Mirror to a deployment without live traffic, or set its live traffic to 0 first.")
    return live, mirror


def check_deletable(endpoint: str, deployment: str, traffic: Mapping, mirror_traffic: Mapping) -> None:
    """A deployment that takes live or mirror traffic cannot be deleted; the message says how to free it."""
    name = deployment.lower()
    for what, shares in (("live", traffic), ("mirror", mirror_traffic)):
        if shares.get(name):
            field = "traffic" if what == "live" else "mirror_traffic"
            raise SpecError(
                f"Deployment '{deployment}' takes {shares[name]}% of endpoint '{endpoint}''s {what} traffic and cannot be "
                f"deleted. Set endpoint.{field} without it (begin_create_or_update the endpoint), then delete it."
            )
