"""Azure's traffic rules for online endpoints, as amlkit checks them before localml (or a deploy task) changes anything."""

from __future__ import annotations

import pytest

from amlkit.errors import SpecError
from amlkit.traffic import check_deletable, check_traffic


def test_traffic_is_normalized_as_the_sdk_sends_it_names_in_lower_case_zeros_dropped_text_read_as_numbers():
    assert check_traffic("ep", {"Blue": "80", "green": 20, "red": 0}, {"Red": 10}, ["blue", "green", "red"]) == (
        {"blue": 80, "green": 20}, {"red": 10})


def test_no_live_traffic_at_all_is_allowed_as_on_azure():
    assert check_traffic("ep", {"blue": 0}, {}, ["blue"]) == ({}, {})


@pytest.mark.parametrize("value", [101, -5, "most", None])
def test_a_share_that_is_not_a_percentage_is_refused(value):
    with pytest.raises(SpecError, match="give a whole percentage from 0 to 100"):
        check_traffic("ep", {"blue": value}, {}, ["blue"])


def test_traffic_before_any_deployment_exists_says_to_create_one_first():
    with pytest.raises(SpecError, match="its deployments: none yet: create one with online_deployments.begin_create_or_update"):
        check_traffic("ep", {"blue": 100}, {}, [])


def test_a_deployment_with_mirror_traffic_cannot_be_deleted_either():
    check_deletable("ep", "green", {"blue": 100}, {})
    with pytest.raises(SpecError, match="takes 20% of endpoint 'ep''s mirror traffic .* endpoint.mirror_traffic without it"):
        check_deletable("ep", "Green", {"blue": 100}, {"green": 20})
