"""Redis Cluster is not supported yet: a cluster URL is refused at start, naming what to use instead.

The Redis store's scripts reach keys in several hash slots (a session and its
subject's index, a refresh token and its family), which a cluster refuses
with CROSSSLOT; until the key layout puts each script's keys in one slot, a
clear error at start beats a failure at the first sign-in.
"""

from __future__ import annotations

import pytest

from policy_sso.errors import StoreError
from policy_sso.sessions import open_store

from .conftest import LIFETIME


@pytest.mark.parametrize("url", ["redis+cluster://127.0.0.1:7000/0", "rediss+cluster://127.0.0.1:7000/0"])
def test_a_redis_cluster_url_is_refused_with_the_alternatives(url):
    with pytest.raises(StoreError, match="Redis Cluster is not supported yet") as refused:
        open_store(url, LIFETIME)
    assert "postgresql://" in str(refused.value)
