"""A Dagster instance on a real PostgreSQL server (dagster-postgres), as teams at thousands of
slides run it: dynamic partitions and a runless asset observation written and read back through
public ``DagsterInstance`` methods. Each test has a database of its own on the session's server
(the ``postgres_url`` fixture), so no test sees another's rows."""

from collections.abc import Iterator

import dagster as dg
import pytest
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage
from pg_server import database, sqlalchemy_url

SLIDES = "slides"


@pytest.fixture
def postgres_instance(postgres_url: str) -> Iterator[dg.DagsterInstance]:
    """A Dagster instance whose runs, event log and schedules live in a new database."""
    with database(postgres_url) as url:
        storage = {"postgres": {"postgres_url": sqlalchemy_url(url)}}
        with dg.instance_for_test(overrides={"storage": storage}) as instance:
            yield instance


def test_partitions_and_observations_round_trip(postgres_instance: dg.DagsterInstance) -> None:
    instance = postgres_instance
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert instance.get_dynamic_partitions(SLIDES) == []

    instance.add_dynamic_partitions(SLIDES, ["slide-b", "slide-a"])
    instance.add_dynamic_partitions(SLIDES, ["slide-a", "slide-c"])  # idempotent per key
    assert instance.get_dynamic_partitions(SLIDES) == ["slide-b", "slide-a", "slide-c"]
    assert instance.has_dynamic_partition(SLIDES, "slide-c")
    assert not instance.has_dynamic_partition(SLIDES, "slide-z")

    key = dg.AssetKey(["wsi", "slide_source"])
    instance.report_runless_asset_event(
        dg.AssetObservation(
            asset_key=key,
            partition="slide-a",
            metadata={"etag": "e1", "bytes": 1234},
            tags={"dagster/data_version": "e1"},
        )
    )
    instance.report_runless_asset_event(dg.AssetObservation(asset_key=key, partition="slide-b"))

    result = instance.fetch_observations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=["slide-a"]), limit=10
    )
    assert len(result.records) == 1
    observation = result.records[0].asset_observation
    assert observation is not None
    assert observation.asset_key == key
    assert observation.partition == "slide-a"
    assert observation.metadata == {
        "etag": dg.TextMetadataValue("e1"),
        "bytes": dg.IntMetadataValue(1234),
    }
    assert observation.tags == {"dagster/data_version": "e1"}
    assert result.records[0].run_id == ""  # runless
    everything = instance.fetch_observations(key, limit=10)
    assert [r.partition_key for r in everything.records] == ["slide-b", "slide-a"]  # newest first


def test_each_test_has_an_empty_database(postgres_instance: dg.DagsterInstance) -> None:
    """Nothing written by the other test is here."""
    key = dg.AssetKey(["wsi", "slide_source"])
    assert postgres_instance.get_dynamic_partitions(SLIDES) == []
    assert postgres_instance.fetch_observations(key, limit=10).records == []
