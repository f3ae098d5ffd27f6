"""sources.yaml: a connector per entity, files by default, and errors that name the line."""

import datetime as dt

import pytest

from cs_pipeline.logic.config import ConfigError
from cs_pipeline.resources.source import SourcesResource
from cs_pipeline.sources import load_sources
from cs_pipeline.sources.files import FilesConnector
from tests.support import planted


def test_without_sources_yaml_every_entity_comes_from_files(tmp_path):
    planted.write(tmp_path)
    source = SourcesResource(data_dir=str(tmp_path))
    assert source.snapshot("accounts").frame.height == len(planted.ACCOUNTS) + 1
    assert source.snapshot("engagements") is None  # optional export, absent
    events = source.events(dt.date(2025, 3, 3))
    assert events.locations == [str(tmp_path / "events" / "date=2025-03-03" / "part-0.jsonl.gz")]


def test_entities_may_name_the_files_connector_explicitly(tmp_path):
    (tmp_path / "sources.yaml").write_text("entities:\n  accounts: files\n")
    plan = load_sources(tmp_path / "sources.yaml", FilesConnector(data_dir=str(tmp_path)))
    assert plan.connector_for("accounts").type == "files" and plan.connector_for("events").type == "files"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("entities:\n  accounts: files\n  widgets: files\n", 3, "'widgets' is not an entity of the contract"),
        ("entities:\n  accounts: crm\n", 2, "no connector named 'crm'; valid choices: files"),
        ("connectors:\n  crm:\n    type: nosuch\n", 2, "nosuch"),
        ("entities: [accounts]\n", 1, "entities"),
        ("connectors:\n  files:\n    type: files\n    data_dir: x\n", 2, "'files' is the built-in files source"),
    ],
)
def test_mistakes_name_the_file_and_line(tmp_path, text, line, message):
    (tmp_path / "sources.yaml").write_text(text)
    with pytest.raises(ConfigError) as error:
        load_sources(tmp_path / "sources.yaml", FilesConnector(data_dir=str(tmp_path)))
    assert f"sources.yaml:{line}:" in str(error.value) and message in str(error.value)


def test_the_shipped_example_is_valid_and_routes_every_entity(tmp_path):
    from cs_pipeline import settings

    plan = load_sources(settings.PROJECT_DIR / "sources.example.yaml", FilesConnector(data_dir=str(tmp_path)))
    routed = {entity: plan.connector_for(entity).type for entity in
              ("users", "events", "accounts", "contracts", "activities", "tickets", "nps_responses", "engagements")}
    assert routed == {"users": "database", "events": "database", "accounts": "salesforce", "contracts": "salesforce",
                      "activities": "salesforce", "tickets": "zendesk", "nps_responses": "delighted", "engagements": "files"}


def test_a_connector_cannot_be_given_an_entity_it_does_not_land(tmp_path):
    (tmp_path / "sources.yaml").write_text(
        "connectors:\n  db:\n    type: database\n    url_env: X\nentities:\n  tickets: db\n"
    )
    with pytest.raises(ConfigError, match=r"sources.yaml:6: entities.tickets: a database connector cannot land tickets; valid choices: users, events"):
        load_sources(tmp_path / "sources.yaml", FilesConnector(data_dir=str(tmp_path)))
