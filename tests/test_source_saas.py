"""The SaaS connectors (Salesforce, HubSpot, Zendesk, Delighted) against loopback fakes of their APIs:
paging, field mapping, value translation, and what happens when the API is slow, busy, down or
refuses the credentials. Every good extract must pass the contract's validation untouched."""

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl
import pytest
import yaml
from pydantic import ValidationError

from cs_pipeline.logic.contract import ENTITIES, LINE, SOURCE, validate
from cs_pipeline.sources import hubspot as hs_module
from cs_pipeline.sources.base import ConnectorError, Extract
from cs_pipeline.sources.delighted import DelightedConnector
from cs_pipeline.sources.http import as_text, pick
from cs_pipeline.sources.hubspot import HubSpotConnector
from cs_pipeline.sources.salesforce import SalesforceConnector
from cs_pipeline.sources.zendesk import ZendeskConnector
from tests.support.saas_servers import (
    DelightedServer,
    FakeApi,
    HubSpotServer,
    SalesforceServer,
    ZendeskServer,
)

# Tiny waits: the behaviour is the same as with production's seconds, the suite stays fast.
FAST = {"timeout_seconds": 0.5, "retry_max_seconds": 3.0, "backoff_seconds": 0.01}


def assert_clean(entity: str, extract: Extract, rows: int, **rules) -> pl.DataFrame:
    """The extract has exactly the contract's columns, every row passes validation, and it is returned."""
    frame = extract.frame
    assert sorted(frame.columns) == sorted([*ENTITIES[entity].column_names, SOURCE])
    assert LINE not in frame.columns
    result = validate(entity, frame, **rules)
    assert result.rejected.height == 0, result.rejected.to_dicts()
    assert result.valid.height == rows
    return frame


def by_key(frame: pl.DataFrame, key: str) -> dict[str, dict]:
    return {row[key]: row for row in frame.to_dicts()}


# --- Salesforce --------------------------------------------------------------------------------

CSM = {"attributes": {"type": "User"}, "Id": "005A", "Email": "csm@example.com"}


def sf_accounts(**extra) -> list[dict]:
    segments = ["Enterprise", "Mid-Market", "SMB", "Enterprise", "SMB"]
    return [
        {
            "Id": f"001A{i}", "Name": f"Acme {i}", "Segment__c": segments[i], "Owner": CSM if i != 4 else None,
            "Plan__c": "Pro", "Licenses__c": 50.0 + i, "Status__c": "Active" if i != 2 else "Trial",
            "CreatedDate": "2024-01-15T10:00:00.000+0000", **extra,
        }
        for i in range(5)
    ]


def sf_org(**objects) -> dict[str, list[dict]]:
    tasks = [
        {"Id": "00T1", "AccountId": "001A0", "Owner": CSM, "Type": None, "TaskSubtype": "Call", "IsClosed": True,
         "CompletedDateTime": "2024-02-01T10:00:00.000+0000", "ActivityDate": "2024-02-01", "CreatedDate": "2024-01-30T09:00:00.000+0000"},
        {"Id": "00T2", "AccountId": "001A1", "Owner": CSM, "Type": "Email", "TaskSubtype": "Email", "IsClosed": True,
         "CompletedDateTime": None, "ActivityDate": "2024-02-05", "CreatedDate": "2024-02-05T09:00:00.000+0000"},
        {"Id": "00T3", "AccountId": "001A1", "Owner": CSM, "Type": "Call", "TaskSubtype": "Task", "IsClosed": False,
         "CompletedDateTime": None, "ActivityDate": "2024-06-01", "CreatedDate": "2024-02-05T09:00:00.000+0000"},
        {"Id": "00T4", "AccountId": "001A2", "Owner": CSM, "Type": "QBR", "TaskSubtype": "Task", "IsClosed": True, "IsDeleted": True,
         "CompletedDateTime": "2024-02-07T10:00:00.000+0000", "ActivityDate": "2024-02-07", "CreatedDate": "2024-02-07T09:00:00.000+0000"},
    ]
    events = [
        {"Id": "00U1", "AccountId": "001A2", "Owner": CSM, "Type": None, "StartDateTime": "2024-02-03T15:00:00.000+0000",
         "ActivityDateTime": "2024-02-03T15:00:00.000+0000", "ActivityDate": "2024-02-03"},
        {"Id": "00U2", "AccountId": "001A3", "Owner": CSM, "Type": "Business Review", "StartDateTime": "2024-02-04T15:00:00.000+0000",
         "ActivityDateTime": "2024-02-04T15:00:00.000+0000", "ActivityDate": "2024-02-04"},
    ]
    contracts = [
        {"Id": f"800A{i}", "AccountId": f"001A{i}", "StartDate": "2024-01-01", "EndDate": "2024-12-31", "ARR__c": 12000.0 * (i + 1)}
        for i in range(5)
    ]
    return {"Account": sf_accounts(), "Contract": contracts, "Task": tasks, "Event": events, **objects}


def salesforce(server: SalesforceServer, **settings) -> SalesforceConnector:
    return SalesforceConnector(instance_url=server.url, token_env="SF_TOKEN", **{**FAST, **settings})


def test_salesforce_accounts_follow_next_records_url(monkeypatch):
    with SalesforceServer(sf_org(), page_size=2) as server:
        monkeypatch.setenv("SF_TOKEN", server.token)
        extract = salesforce(server).snapshot("accounts")

    frame = assert_clean("accounts", extract, rows=5)
    # One query, then two nextRecordsUrl pages of the same query locator.
    assert [r["path"] for r in server.requests] == [
        "/services/data/v59.0/query",
        "/services/data/v59.0/query/01gD00000000000001-2",
        "/services/data/v59.0/query/01gD00000000000001-4",
    ]
    assert server.queries == [
        "SELECT Id, Name, Segment__c, Owner.Email, Plan__c, Licenses__c, Status__c, CreatedDate FROM Account"
    ]
    rows = by_key(frame, "account_id")
    assert rows["001A1"] == {
        "account_id": "001A1", "name": "Acme 1", "segment": "mid_market", "owner_email": "csm@example.com",
        "plan": "Pro", "licenses": "51", "status": "active", "created_at": "2024-01-15T10:00:00.000+0000",
        "source_file": "salesforce:Account",
    }
    assert rows["001A2"]["status"] == "trial" and rows["001A2"]["segment"] == "smb"
    assert rows["001A4"]["owner_email"] is None  # an account without owner
    assert extract.locations == [f"{server.url}/services/data/v59.0/query (Account)"]


def test_salesforce_maps_custom_fields_and_values(monkeypatch):
    org = sf_org(Account=[{**a, "Seats__c": 200 + i, "Tier__c": "Strategic" if i == 0 else "Growth"} for i, a in enumerate(sf_accounts())])
    with SalesforceServer(org) as server:
        monkeypatch.setenv("SF_TOKEN", server.token)
        connector = SalesforceConnector.model_validate(yaml.safe_load(f"""
            type: salesforce
            instance_url: {server.url}
            token_env: SF_TOKEN
            accounts:
              fields: {{licenses: Seats__c, segment: Tier__c}}
              values: {{segment: {{Strategic: enterprise, Growth: mid_market}}}}
              where: "Status__c != 'Churned'"
        """))
        extract = connector.snapshot("accounts")

    frame = assert_clean("accounts", extract, rows=5)
    assert server.queries == [
        "SELECT Id, Name, Tier__c, Owner.Email, Plan__c, Seats__c, Status__c, CreatedDate FROM Account"
        + " WHERE Status__c != 'Churned'"
    ]
    rows = by_key(frame, "account_id")
    assert [rows[f"001A{i}"]["licenses"] for i in range(5)] == ["200", "201", "202", "203", "204"]
    assert rows["001A0"]["segment"] == "enterprise" and rows["001A1"]["segment"] == "mid_market"


def test_salesforce_unknown_field_names_the_field_and_the_setting(monkeypatch):
    org = sf_org(Account=[{k: v for k, v in a.items() if k != "Licenses__c"} for a in sf_accounts()])
    with SalesforceServer(org) as server:
        monkeypatch.setenv("SF_TOKEN", server.token)
        with pytest.raises(ConnectorError) as error:
            salesforce(server).snapshot("accounts")
    message = str(error.value)
    assert message.startswith("salesforce: HTTP 400")
    assert "No such column 'Licenses__c' on entity 'Account'" in message
    assert "`fields`" in message
    assert server.calls() == 1  # a malformed query is not retried


def test_salesforce_activities_from_closed_tasks_and_events(monkeypatch):
    with SalesforceServer(sf_org()) as server:
        monkeypatch.setenv("SF_TOKEN", server.token)
        extract = salesforce(server).snapshot("activities")

    frame = assert_clean("activities", extract, rows=4)
    rows = by_key(frame, "activity_id")
    # 00T3 is still open (a to-do, not a touch point) and 00T4 is deleted: neither is read.
    assert {k: (r["type"], r["occurred_at"], r["source_file"]) for k, r in rows.items()} == {
        "00T1": ("call", "2024-02-01T10:00:00.000+0000", "salesforce:Task"),  # subtype when Type is empty
        "00T2": ("email", "2024-02-05", "salesforce:Task"),  # due date when not completed at a time
        "00U1": ("meeting", "2024-02-03T15:00:00.000+0000", "salesforce:Event"),  # an event without type
        "00U2": ("qbr", "2024-02-04T15:00:00.000+0000", "salesforce:Event"),
    }
    assert server.queries[0].endswith("FROM Task WHERE IsClosed = true")


def test_salesforce_query_all_reads_archived_activities_but_not_deleted_ones(monkeypatch):
    org = sf_org()
    archived = {**org["Task"][0], "Id": "00T9", "IsArchived": True, "CompletedDateTime": "2022-05-01T10:00:00.000+0000"}
    org["Task"].append(archived)
    with SalesforceServer(org) as server:
        monkeypatch.setenv("SF_TOKEN", server.token)
        connector = salesforce(server, activities=[{"object": "Task", "where": "IsClosed = true", "query_all": True}])
        extract = connector.snapshot("activities")

    frame = assert_clean("activities", extract, rows=3)
    assert sorted(frame["activity_id"]) == ["00T1", "00T2", "00T9"]  # 00T3 open, 00T4 deleted
    assert server.requests[0]["path"] == "/services/data/v59.0/queryAll"
    assert server.queries[0].endswith("FROM Task WHERE (IsClosed = true) AND IsDeleted = false")


def test_salesforce_contracts_land_terms_of_known_accounts(monkeypatch):
    with SalesforceServer(sf_org()) as server:
        monkeypatch.setenv("SF_TOKEN", server.token)
        connector = salesforce(server)
        accounts = connector.snapshot("accounts").frame["account_id"].to_list()
        extract = connector.snapshot("contracts")
    frame = assert_clean("contracts", extract, rows=5, known_accounts=accounts)
    assert by_key(frame, "contract_id")["800A1"] == {
        "contract_id": "800A1", "account_id": "001A1", "start_date": "2024-01-01", "end_date": "2024-12-31",
        "arr": "24000", "source_file": "salesforce:Contract",
    }


# --- HubSpot -----------------------------------------------------------------------------------

HS_OWNERS = [
    {"id": "7", "email": "csm@example.com", "firstName": "Casey", "lastName": "Smith"},
    {"id": "8", "email": "former@example.com", "archived": True},
]


def hs_portal() -> dict[str, list[dict]]:
    companies = [
        {"id": str(100 + i), "createdAt": "2024-01-10T08:00:00.000Z",
         "properties": {"name": f"Co {i}", "segment": ["SMB", "Mid-Market", "Enterprise"][i % 3], "hubspot_owner_id": "7",
                        "plan": "Pro", "licenses": "25", "customer_status": "Active", "createdate": "2024-01-10T08:00:00.000Z"}}
        for i in range(5)
    ]
    deals = [
        {"id": "900", "companies": ["100"], "properties": {"contract_start_date": "2024-01-01", "contract_end_date": "2024-12-31",
                                                          "hs_arr": "12000.5", "hs_is_closed_won": "true"}},
        {"id": "901", "companies": ["101"], "properties": {"contract_start_date": "2024-02-01T00:00:00.000Z",
                                                          "contract_end_date": "1769817600000", "hs_arr": "5000", "hs_is_closed_won": "true"}},
        {"id": "902", "companies": ["102"], "properties": {"hs_arr": "900", "hs_is_closed_won": "false"}},  # an open deal
    ]

    def activity(id_: int, owner: str, **props) -> dict:
        return {"id": str(id_), "companies": ["100"], "properties": {"hubspot_owner_id": owner, **props}}

    return {
        "companies": companies,
        "deals": deals,
        "calls": [activity(500, "7", hs_timestamp="2024-02-01T10:00:00Z")],
        "emails": [activity(501, "7", hs_timestamp="2024-02-02T10:00:00Z")],
        "meetings": [activity(502, "8", hs_meeting_start_time="2024-02-03T10:00:00Z", hs_timestamp="2024-02-01T00:00:00Z")],
        "notes": [activity(503, "404", hs_timestamp="2024-02-04T10:00:00Z")],  # an owner that no longer exists
        "2-555": [{"id": "1", "companies": ["101"], "properties": {"kind": "Webinar attended", "happened_at": "2024-02-05T17:00:00Z"}}],
    }


def hubspot(server: HubSpotServer, **settings) -> HubSpotConnector:
    return HubSpotConnector(base_url=server.url, token_env="HUBSPOT_TOKEN", **{**FAST, **settings})


def test_hubspot_companies_page_by_after_cursor_with_owner_emails(monkeypatch):
    with HubSpotServer(hs_portal(), owners=HS_OWNERS, page_size=2) as server:
        monkeypatch.setenv("HUBSPOT_TOKEN", server.token)
        extract = hubspot(server).snapshot("accounts")

    frame = assert_clean("accounts", extract, rows=5)
    pages = [r["query"] for r in server.requests if r["path"] == "/crm/v3/objects/companies"]
    assert [q.get("after") for q in pages] == [None, ["2"], ["4"]]
    assert pages[0]["properties"] == ["hs_object_id,name,segment,hubspot_owner_id,plan,licenses,customer_status,createdate"]
    assert pages[0]["limit"] == ["100"]
    assert by_key(frame, "account_id")["101"] == {
        "account_id": "101", "name": "Co 1", "segment": "mid_market", "owner_email": "csm@example.com", "plan": "Pro",
        "licenses": "25", "status": "active", "created_at": "2024-01-10T08:00:00.000Z", "source_file": "hubspot:companies",
    }


def test_hubspot_won_deals_are_contract_terms_of_their_company(monkeypatch):
    with HubSpotServer(hs_portal()) as server:
        monkeypatch.setenv("HUBSPOT_TOKEN", server.token)
        extract = hubspot(server).snapshot("contracts")

    frame = assert_clean("contracts", extract, rows=2, known_accounts=["100", "101"])
    assert server.requests[0]["query"]["associations"] == ["companies"]
    rows = by_key(frame, "contract_id")
    assert rows["900"]["account_id"] == "100" and rows["900"]["arr"] == "12000.5"
    # Date properties as a datetime at midnight and as epoch milliseconds both become dates.
    assert (rows["901"]["start_date"], rows["901"]["end_date"]) == ("2024-02-01", "2026-01-31")


def test_hubspot_activities_from_calls_emails_meetings_and_notes(monkeypatch):
    with HubSpotServer(hs_portal(), owners=HS_OWNERS) as server:
        monkeypatch.setenv("HUBSPOT_TOKEN", server.token)
        extract = hubspot(server).snapshot("activities")

    frame = assert_clean("activities", extract, rows=4)
    assert {k: (r["type"], r["owner_email"], r["occurred_at"]) for k, r in by_key(frame, "activity_id").items()} == {
        "500": ("call", "csm@example.com", "2024-02-01T10:00:00Z"),
        "501": ("email", "csm@example.com", "2024-02-02T10:00:00Z"),
        "502": ("meeting", "former@example.com", "2024-02-03T10:00:00Z"),  # an archived owner still has an email
        "503": ("note", None, "2024-02-04T10:00:00Z"),
    }


def test_hubspot_engagements_come_from_the_objects_sources_yaml_names(monkeypatch):
    with HubSpotServer(hs_portal()) as server:
        monkeypatch.setenv("HUBSPOT_TOKEN", server.token)
        with pytest.raises(ConnectorError, match="no CRM objects are configured for engagements"):
            hubspot(server).snapshot("engagements")
        assert server.calls() == 0
        connector = hubspot(server, engagements=[{
            "object": "2-555",
            "fields": {"engagement_id": "id", "account_id": "associated_company", "type": "kind", "occurred_at": "happened_at"},
            "values": {"type": {"Webinar attended": "webinar"}},
        }])
        extract = connector.snapshot("engagements")
    frame = assert_clean("engagements", extract, rows=1)
    assert frame.row(0, named=True) == {
        "engagement_id": "1", "account_id": "101", "type": "webinar", "occurred_at": "2024-02-05T17:00:00Z",
        "source_file": "hubspot:2-555",
    }


# --- HubSpot incremental (state_dir) -------------------------------------------------------------


def hs_dated_portal() -> dict[str, list[dict]]:
    """The portal with records last modified on different days (companies 2024-01-01 … 01-05)."""
    portal = hs_portal()
    for i, company in enumerate(portal["companies"]):
        company["updatedAt"] = f"2024-01-0{i + 1}T00:00:00.000Z"
    for i, deal in enumerate(portal["deals"]):
        deal["updatedAt"] = f"2024-02-0{i + 1}T00:00:00.000Z"
    return portal


def ms(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso).timestamp() * 1000)


def hs_state(state_dir, entity: str, obj: str) -> dict:
    return json.loads((state_dir / "hubspot" / f"{entity}.{obj}.json").read_text())


def sorted_rows(frame: pl.DataFrame, key: str) -> list[dict]:
    return sorted(frame.to_dicts(), key=lambda row: row[key])


def full_read(server: HubSpotServer, entity: str) -> pl.DataFrame:
    return hubspot(server).snapshot(entity).frame


def test_hubspot_incremental_searches_what_changed_and_returns_the_full_current_set(monkeypatch, tmp_path):
    with HubSpotServer(hs_dated_portal(), owners=HS_OWNERS, page_size=2) as server:
        monkeypatch.setenv("HUBSPOT_TOKEN", server.token)
        connector = hubspot(server, state_dir=str(tmp_path))
        first = connector.snapshot("accounts")
        assert_clean("accounts", first, rows=5)
        assert server.searches() == []  # the first run is a full read
        assert server.calls("/crm/v3/objects/companies") == 3
        state = hs_state(tmp_path, "accounts", "companies")
        assert state["cursor_ms"] == ms("2024-01-05T00:00:00.000Z") and state["rows"] == 5

        server.modify("companies", "101", name="Co 1 renamed", segment="Enterprise")
        server.add("companies", {"id": "105", "createdAt": "2025-01-01T00:00:00.000Z",
                                 "properties": {"name": "Co 5", "segment": "SMB", "hubspot_owner_id": "8", "plan": "Pro",
                                                "licenses": "3", "customer_status": "Trial", "createdate": "2025-01-01T00:00:00.000Z"}})
        server.archive("companies", "103")
        server.requests.clear()
        second = connector.snapshot("accounts")

        made = [(r["method"], r["path"], (r["query"].get("archived") or [None])[0]) for r in server.requests]
        # Only a search for the changes and the archived ids: no full listing of the companies.
        assert ("GET", "/crm/v3/objects/companies", "false") not in made
        assert {m for m in made if m[1].startswith("/crm/v3/objects")} == {
            ("POST", "/crm/v3/objects/companies/search", None), ("GET", "/crm/v3/objects/companies", "true")}
        assert server.searches()[0] == {
            "filterGroups": [{"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GTE",
                                           "value": str(ms("2024-01-05T00:00:00.000Z") - hs_module.SEARCH_OVERLAP_MS)}]}],
            "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
            "properties": ["hs_object_id", "name", "segment", "hubspot_owner_id", "plan", "licenses", "customer_status",
                           "createdate", "hs_lastmodifieddate"],
            "limit": 100,
        }
        assert [len(page.get("after", "")) for page in server.searches()] == [0, 1]  # two pages of 2: 104, 101, 105
        frame = assert_clean("accounts", second, rows=5)
        assert sorted_rows(frame, "account_id") == sorted_rows(full_read(server, "accounts"), "account_id")

    rows = by_key(frame, "account_id")
    assert "103" not in rows
    assert (rows["101"]["name"], rows["101"]["segment"]) == ("Co 1 renamed", "enterprise")
    assert (rows["105"]["owner_email"], rows["105"]["status"]) == ("former@example.com", "trial")
    state = hs_state(tmp_path, "accounts", "companies")
    # The archive moved 103 last, but search never shows archived records: 105 is the newest seen.
    assert state["cursor_ms"] == ms(server.find("companies", "105")["updatedAt"]) and state["rows"] == 5
    assert len(list((tmp_path / "hubspot").glob("accounts.companies.*.parquet"))) == 1  # the old rows file is gone


def test_hubspot_incremental_deals_get_their_companies_and_filters_drop_lost_deals(monkeypatch, tmp_path):
    with HubSpotServer(hs_dated_portal()) as server:
        monkeypatch.setenv("HUBSPOT_TOKEN", server.token)
        connector = hubspot(server, state_dir=str(tmp_path))
        assert_clean("contracts", connector.snapshot("contracts"), rows=2, known_accounts=["100", "101"])
        server.modify("deals", "902", hs_is_closed_won="true", contract_start_date="2025-01-01", contract_end_date="2025-12-31")
        server.modify("deals", "900", hs_is_closed_won="false")  # a won deal reopened: no longer a contract term
        server.requests.clear()
        extract = connector.snapshot("contracts")
        batch = [r for r in server.requests if r["path"] == "/crm/v3/associations/deals/companies/batch/read"]
        assert [sorted(i["id"] for i in r["body"]["inputs"]) for r in batch] == [["900", "902"]]
        assert not any(r["path"] == "/crm/v3/objects/deals" and r["query"].get("archived") == ["false"] for r in server.requests)
        frame = assert_clean("contracts", extract, rows=2, known_accounts=["101", "102"])
        assert sorted_rows(frame, "contract_id") == sorted_rows(full_read(server, "contracts"), "contract_id")
    assert by_key(frame, "contract_id")["902"]["account_id"] == "102"


def test_hubspot_incremental_activities_keep_one_cache_per_object(monkeypatch, tmp_path):
    with HubSpotServer(hs_dated_portal(), owners=HS_OWNERS) as server:
        monkeypatch.setenv("HUBSPOT_TOKEN", server.token)
        connector = hubspot(server, state_dir=str(tmp_path))
        connector.snapshot("activities")
        assert sorted(p.name for p in (tmp_path / "hubspot").glob("*.json")) == [
            f"activities.{o}.json" for o in ("calls", "emails", "meetings", "notes")]
        server.modify("calls", "500", hs_timestamp="2024-03-01T10:00:00Z")
        server.archive("notes", "503")
        server.requests.clear()
        frame = assert_clean("activities", connector.snapshot("activities"), rows=3)
        assert {b.get("after") for b in server.searches()} == {None} and len(server.searches()) == 4
        assert sorted_rows(frame, "activity_id") == sorted_rows(full_read(server, "activities"), "activity_id")
    assert by_key(frame, "activity_id")["500"]["occurred_at"] == "2024-03-01T10:00:00Z"


def test_hubspot_incremental_failure_mid_search_keeps_the_cache_and_the_next_run_recovers(monkeypatch, tmp_path):
    with HubSpotServer(hs_dated_portal(), owners=HS_OWNERS, page_size=1) as server:
        monkeypatch.setenv("HUBSPOT_TOKEN", server.token)
        connector = hubspot(server, state_dir=str(tmp_path), retry_max_seconds=0.2)
        connector.snapshot("accounts")
        folder = tmp_path / "hubspot"
        before = {p.name: p.read_bytes() for p in folder.iterdir()}
        server.modify("companies", "100", name="Co 0 renamed")
        server.modify("companies", "102", name="Co 2 renamed")
        server.break_search(after=1)  # the first page (104) answers, the second fails
        with pytest.raises(ConnectorError, match=r"hubspot: gave up on /crm/v3/objects/companies/search"):
            connector.snapshot("accounts")
        assert [b.get("after") for b in server.searches()][:2] == [None, "1"]
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # cache and cursor untouched

        server.break_search(None)
        server.requests.clear()
        frame = assert_clean("accounts", connector.snapshot("accounts"), rows=5)
        assert server.searches()[0]["filterGroups"][0]["filters"][0]["value"] == str(
            ms("2024-01-05T00:00:00.000Z") - hs_module.SEARCH_OVERLAP_MS)  # the same window again
        assert sorted_rows(frame, "account_id") == sorted_rows(full_read(server, "accounts"), "account_id")
    assert by_key(frame, "account_id")["102"]["name"] == "Co 2 renamed"
    assert hs_state(tmp_path, "accounts", "companies")["cursor_ms"] == ms(server.find("companies", "102")["updatedAt"])


def test_hubspot_incremental_falls_back_to_a_full_read_past_the_search_cap(monkeypatch, tmp_path):
    monkeypatch.setattr(hs_module, "SEARCH_LIMIT", 2)
    with HubSpotServer(hs_dated_portal(), owners=HS_OWNERS, search_cap=2) as server:
        monkeypatch.setenv("HUBSPOT_TOKEN", server.token)
        connector = hubspot(server, state_dir=str(tmp_path))
        connector.snapshot("accounts")
        for id_ in ("100", "101", "102"):
            server.modify("companies", id_, plan="Enterprise")
        server.requests.clear()
        frame = assert_clean("accounts", connector.snapshot("accounts"), rows=5)
        assert len(server.searches()) == 1  # total 4 > 2: no paging into the cap
        assert any(r["path"] == "/crm/v3/objects/companies" and r["query"].get("archived") == ["false"] for r in server.requests)
        assert sorted_rows(frame, "account_id") == sorted_rows(full_read(server, "accounts"), "account_id")
    assert hs_state(tmp_path, "accounts", "companies")["cursor_ms"] == ms(server.find("companies", "102")["updatedAt"])


def test_hubspot_search_pages_stop_at_the_cap_as_hubspots():
    with HubSpotServer(hs_dated_portal(), search_cap=2, page_size=1) as server:
        status, body = server.route_post("/crm/v3/objects/companies/search", {}, {"limit": 1, "after": "2"}, {})
        assert status == 400 and "after" in body["message"]
        status, body = server.route_post("/crm/v3/objects/companies/search", {}, {"limit": 1, "after": "1"}, {})
        assert status == 200 and body["total"] == 5 and body["paging"]["next"]["after"] == "2"


def test_hubspot_incremental_cache_of_another_mapping_is_not_reused(monkeypatch, tmp_path):
    with HubSpotServer(hs_dated_portal(), owners=HS_OWNERS) as server:
        monkeypatch.setenv("HUBSPOT_TOKEN", server.token)
        hubspot(server, state_dir=str(tmp_path)).snapshot("accounts")
        server.requests.clear()
        remapped = hubspot(server, state_dir=str(tmp_path), accounts={"fields": {"plan": "=Pro"}})
        assert_clean("accounts", remapped.snapshot("accounts"), rows=5)
        assert server.searches() == []


def test_hubspot_without_state_dir_reads_in_full_every_time(monkeypatch, tmp_path):
    with HubSpotServer(hs_dated_portal(), owners=HS_OWNERS) as server:
        monkeypatch.setenv("HUBSPOT_TOKEN", server.token)
        monkeypatch.chdir(tmp_path)
        connector = hubspot(server)
        connector.snapshot("accounts")
        server.modify("companies", "101", name="Co 1 renamed")
        frame = connector.snapshot("accounts").frame
        assert server.searches() == [] and server.calls("/crm/v3/objects/companies") == 2
    assert by_key(frame, "account_id")["101"]["name"] == "Co 1 renamed"
    assert list(tmp_path.iterdir()) == []


# --- Zendesk -----------------------------------------------------------------------------------


def ticket(id_, updated, status, priority="normal", csat=None, org=11, created="2024-01-01T09:00:00Z"):
    return {
        "id": id_, "url": f"https://acme.zendesk.com/api/v2/tickets/{id_}.json", "organization_id": org,
        "created_at": created, "updated_at": updated, "status": status, "priority": priority,
        "subject": f"Ticket {id_}", "satisfaction_rating": {"score": csat} if csat else None, "custom_fields": [],
    }


# Versions in the order they happened: ticket 1 is opened, put on hold, solved; ticket 3 is deleted.
ZD_VERSIONS = [
    ticket(1, "2024-01-01T10:00:00Z", "new", None),
    ticket(2, "2024-01-02T10:00:00Z", "open", "high", org=12),
    ticket(1, "2024-01-03T10:00:00Z", "hold", "urgent"),
    ticket(3, "2024-01-04T10:00:00Z", "deleted", "low"),
    ticket(4, "2024-01-05T10:00:00Z", "closed", "low", csat="bad", org=12),
    ticket(5, "2024-01-05T11:00:00Z", "pending", "normal", csat="offered"),
    ticket(1, "2024-01-06T10:00:00Z", "solved", "urgent", csat="good"),
]
ZD_ORGS = [{"id": 11, "name": "Acme", "external_id": "001A0"}, {"id": 12, "name": "Beta", "external_id": "001A1"}]


def zendesk(server: ZendeskServer, **settings) -> ZendeskConnector:
    return ZendeskConnector(base_url=server.url, email_env="ZENDESK_EMAIL", token_env="ZENDESK_TOKEN", **{**FAST, **settings})


def zendesk_env(monkeypatch, server: ZendeskServer) -> None:
    monkeypatch.setenv("ZENDESK_EMAIL", server.email)
    monkeypatch.setenv("ZENDESK_TOKEN", server.token)


def test_zendesk_export_follows_the_cursor_to_end_of_stream_and_latest_version_wins(monkeypatch):
    with ZendeskServer(ZD_VERSIONS, ZD_ORGS, page_size=2) as server:
        zendesk_env(monkeypatch, server)
        extract = zendesk(server).snapshot("tickets")

    frame = assert_clean("tickets", extract, rows=4)
    queries = [r["query"] for r in server.requests]
    assert len(queries) == 3  # 6 live versions, 2 a page
    assert queries[0]["start_time"] == ["0"] and "cursor" not in queries[0]
    assert all("cursor" in q and "start_time" not in q for q in queries[1:])
    assert all(q["exclude_deleted"] == ["true"] for q in queries)
    rows = by_key(frame, "ticket_id")
    assert {k: (r["status"], r["priority"], r["csat"], r["updated_at"]) for k, r in rows.items()} == {
        "1": ("resolved", "urgent", "5", "2024-01-06T10:00:00Z"),  # the latest of three versions
        "2": ("open", "high", None, "2024-01-02T10:00:00Z"),
        "4": ("closed", "low", "1", "2024-01-05T10:00:00Z"),
        "5": ("pending", "normal", None, "2024-01-05T11:00:00Z"),  # a rating offered, not given
    }
    assert rows["1"]["account_id"] == "11" and rows["1"]["source_file"] == "zendesk:tickets"


@pytest.mark.parametrize(
    ("status", "priority", "expected"),
    [("new", None, ("open", "normal")), ("open", "low", ("open", "low")), ("pending", "normal", ("pending", "normal")),
     ("hold", "high", ("pending", "high")), ("solved", "urgent", ("resolved", "urgent")), ("closed", "low", ("closed", "low"))],
)
def test_zendesk_statuses_and_priorities_map_to_the_contract(status, priority, expected):
    row = zendesk_mapping()(ticket(9, "2024-01-01T10:00:00Z", status, priority))
    assert (row["status"], row["priority"]) == expected


def zendesk_mapping():
    return ZendeskConnector(subdomain="acme", email_env="E", token_env="T").mapping()


def test_zendesk_account_from_the_organization_and_start_time(monkeypatch):
    with ZendeskServer(ZD_VERSIONS, ZD_ORGS) as server:
        zendesk_env(monkeypatch, server)
        connector = zendesk(server, start_time="2024-01-05", fields={"account_id": "organization.external_id"})
        extract = connector.snapshot("tickets")

    frame = assert_clean("tickets", extract, rows=3)
    query = server.requests[0]["query"]
    assert query["start_time"] == ["1704412800"] and query["include"] == ["organizations"]
    assert {r["ticket_id"]: r["account_id"] for r in frame.to_dicts()} == {"1": "001A0", "4": "001A1", "5": "001A0"}


# --- Delighted ---------------------------------------------------------------------------------


def dl_responses() -> list[dict]:
    nps = [
        {"id": str(10 + i), "person": "p1", "survey_type": "nps", "score": [9, 10, 6, 0, 8][i], "comment": "Great" if i % 2 else None,
         "permalink": f"https://delighted.com/r/{i}", "created_at": 1706000000 + 3600 * i, "updated_at": 1706000000 + 3600 * i,
         "person_properties": {"account_id": "001A0", "user_id": f"u{i}"}, "notes": [], "tags": [], "additional_answers": []}
        for i in range(5)
    ]
    csat = {**nps[0], "id": "99", "survey_type": "smileys", "score": 4, "created_at": 1706100000}
    return [*nps, csat]


def delighted(server: DelightedServer, **settings) -> DelightedConnector:
    return DelightedConnector(base_url=server.url, api_key_env="DELIGHTED_API_KEY", **{**FAST, **settings})


def test_delighted_pages_until_an_empty_page_and_keeps_nps_responses(monkeypatch):
    with DelightedServer(dl_responses(), people={"p1": {"id": "p1", "email": "ann@acme.test"}}) as server:
        monkeypatch.setenv("DELIGHTED_API_KEY", server.api_key)
        extract = delighted(server, page_size=2).snapshot("nps_responses")
        expanded = delighted(server, fields={"user_id": "person.email"}).snapshot("nps_responses")

    frame = assert_clean("nps_responses", extract, rows=5)
    pages = [r["query"] for r in server.requests]
    assert [q["page"] for q in pages[:4]] == [["1"], ["2"], ["3"], ["4"]] and pages[0]["per_page"] == ["2"]
    assert by_key(frame, "response_id")["13"] == {
        "response_id": "13", "account_id": "001A0", "user_id": "u3", "score": "0", "comment": "Great",
        "submitted_at": "2024-01-23T11:53:20+00:00", "source_file": "delighted:survey_responses",
    }
    assert pages[4]["expand[]"] == ["person"]
    assert set(expanded.frame["user_id"]) == {"ann@acme.test"}


# --- reliability, the same for every connector -------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    entity: str
    make_server: Callable[..., FakeApi]
    make_connector: Callable[..., object]
    env: Callable[[FakeApi], dict[str, str]]  # environment variable → value
    setting: str  # the setting that names the secret's variable
    requests: int  # requests of a clean read


CASES = [
    Case("salesforce", "accounts", lambda **kw: SalesforceServer(sf_org(), page_size=2, **kw), salesforce,
         lambda s: {"SF_TOKEN": s.token}, "token_env", 3),
    Case("hubspot", "contracts", lambda **kw: HubSpotServer(hs_portal(), owners=HS_OWNERS, page_size=1, **kw), hubspot,
         lambda s: {"HUBSPOT_TOKEN": s.token}, "token_env", 3),
    Case("zendesk", "tickets", lambda **kw: ZendeskServer(ZD_VERSIONS, ZD_ORGS, page_size=3, **kw), zendesk,
         lambda s: {"ZENDESK_EMAIL": s.email, "ZENDESK_TOKEN": s.token}, "token_env", 2),
    Case("delighted", "nps_responses", lambda **kw: DelightedServer(dl_responses(), **kw),
         lambda s, **kw: delighted(s, page_size=3, **kw), lambda s: {"DELIGHTED_API_KEY": s.api_key}, "api_key_env", 3),
]
IDS = [case.name for case in CASES]


def secret_of(case: Case, server: FakeApi) -> tuple[str, str]:
    """The variable holding the secret and its value (Zendesk: the token, not the email)."""
    name, value = list(case.env(server).items())[-1]
    return name, value


def run(case: Case, monkeypatch, server: FakeApi, **settings) -> Extract:
    for name, value in case.env(server).items():
        monkeypatch.setenv(name, value)
    return case.make_connector(server, **settings).snapshot(case.entity)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_server_errors_are_retried_then_the_read_succeeds(case, monkeypatch):
    with case.make_server() as server:
        server.fail_next(2, "server_error")
        extract = run(case, monkeypatch, server)
    assert server.calls() == case.requests + 2
    assert [r["outcome"] for r in server.requests[:3]] == ["server_error", "server_error", 200]
    assert extract.frame.height > 0 and validate(case.entity, extract.frame).rejected.height == 0


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_rate_limits_are_waited_out_then_the_read_succeeds(case, monkeypatch):
    # Zendesk and Delighted say how long to wait (Retry-After); the others leave it to backoff.
    asks = case.name in ("zendesk", "delighted")
    with case.make_server(retry_after="1" if asks else None) as server:
        server.fail_next(1, "rate_limited")
        started = time.monotonic()
        extract = run(case, monkeypatch, server)
        elapsed = time.monotonic() - started
    assert server.calls() == case.requests + 1
    assert extract.frame.height > 0
    assert (elapsed >= 1.0) if asks else (elapsed < 1.0)


def test_a_timeout_is_retried_then_the_read_succeeds(monkeypatch):
    case = CASES[1]
    with case.make_server(hold_seconds=2.0) as server:
        server.fail_next(1, "timeout")
        started = time.monotonic()
        extract = run(case, monkeypatch, server, timeout_seconds=0.2)
        elapsed = time.monotonic() - started
    assert extract.frame.height == 2 and server.calls() == case.requests + 1
    assert elapsed < 1.5  # the held answer was abandoned after timeout_seconds, not awaited


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_persistent_server_errors_end_in_a_clear_error_within_the_budget(case, monkeypatch):
    with case.make_server() as server:
        server.fail_next(1000, "server_error")
        started = time.monotonic()
        with pytest.raises(ConnectorError) as error:
            run(case, monkeypatch, server, retry_max_seconds=0.4, backoff_seconds=0.02)
        elapsed = time.monotonic() - started
    message = str(error.value)
    assert message.startswith(f"{case.name}: gave up on /")
    assert "HTTP 500" in message and "`retry_max_seconds` (0.4 s)" in message
    assert 2 < server.calls() < 20
    assert elapsed < 0.4 + 1.0


def test_a_timeout_that_persists_ends_in_a_clear_error(monkeypatch):
    case = CASES[3]
    with case.make_server(hold_seconds=2.0) as server:
        server.fail_next(1000, "timeout")
        with pytest.raises(ConnectorError, match=r"no answer within 0.1 s \(`timeout_seconds`\)"):
            run(case, monkeypatch, server, timeout_seconds=0.1, retry_max_seconds=0.3, backoff_seconds=0.02)


def test_a_retry_after_beyond_the_budget_fails_at_once(monkeypatch):
    case = CASES[2]
    with case.make_server(retry_after="120") as server:
        server.fail_next(1, "rate_limited")
        with pytest.raises(ConnectorError) as error:
            run(case, monkeypatch, server, retry_max_seconds=5)
    assert server.calls() == 1
    assert "APIRateLimitExceeded" in str(error.value) and "wait 120 s more (Retry-After)" in str(error.value)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_rejected_credentials_fail_at_once_naming_the_variable_never_the_secret(case, monkeypatch):
    wrong = "sk-live-WRONG-0123456789"
    with case.make_server() as server:
        name, _ = secret_of(case, server)
        for variable, value in case.env(server).items():
            monkeypatch.setenv(variable, value)
        monkeypatch.setenv(name, wrong)
        with pytest.raises(ConnectorError) as error:
            case.make_connector(server).snapshot(case.entity)
    message = str(error.value)
    assert server.calls() == 1  # not retried
    assert message.startswith(f"{case.name}: the API refused the credentials (HTTP 401")
    assert f"environment variable {name} (setting `{case.setting}`)" in message
    assert wrong not in message and wrong not in repr(error.value)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forbidden_fails_at_once_with_the_apis_reason(case, monkeypatch):
    with case.make_server() as server:
        server.fail_next(1, "forbidden")
        with pytest.raises(ConnectorError) as error:
            run(case, monkeypatch, server)
        name, secret = secret_of(case, server)
    message = str(error.value)
    assert server.calls() == 1
    assert message.startswith(f"{case.name}: access denied (HTTP 403") and name in message
    assert secret not in message
    reasons = {"salesforce": "API_DISABLED_FOR_ORG", "hubspot": "MISSING_SCOPES", "zendesk": "You do not have access",
               "delighted": "Forbidden"}
    assert reasons[case.name] in message


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_missing_secret_names_the_variable_before_any_request(case, monkeypatch):
    with case.make_server() as server:
        name, _ = secret_of(case, server)
        for variable, value in case.env(server).items():
            monkeypatch.setenv(variable, value)
        monkeypatch.delenv(name)
        with pytest.raises(ConnectorError, match=f"{case.name}: environment variable {name} \\(setting `{case.setting}`\\) is not set"):
            case.make_connector(server).snapshot(case.entity)
    assert server.calls() == 0


# --- sources.yaml ------------------------------------------------------------------------------

SOURCES_YAML = """
salesforce:
  type: salesforce
  instance_url: https://acme.my.salesforce.com
  token_env: SALESFORCE_ACCESS_TOKEN
  accounts:
    fields: {licenses: Seats__c, segment: Customer_Segment__c}
    values: {segment: {Strategic: enterprise}}
  contracts: {where: "Status = 'Activated'"}
  activities:
    - {object: Task, where: "IsClosed = true", query_all: true}
    - {object: Event}
hubspot:
  type: hubspot
  token_env: HUBSPOT_TOKEN
  accounts: {fields: {licenses: seats, segment: cs_segment}}
  contracts: {fields: {arr: amount}}
  engagements:
    - object: "2-1234567"
      fields: {engagement_id: id, account_id: associated_company, type: kind, occurred_at: happened_at}
      values: {type: {Webinar attended: webinar}}
zendesk:
  type: zendesk
  subdomain: acme
  email_env: ZENDESK_EMAIL
  token_env: ZENDESK_API_TOKEN
  start_time: 2023-01-01
  fields: {account_id: organization.external_id}
delighted:
  type: delighted
  api_key_env: DELIGHTED_API_KEY
  fields: {account_id: "person_properties.Company ID"}
"""

CONNECTORS = {"salesforce": SalesforceConnector, "hubspot": HubSpotConnector, "zendesk": ZendeskConnector,
              "delighted": DelightedConnector}


def test_sources_yaml_examples_are_valid():
    for name, settings in yaml.safe_load(SOURCES_YAML).items():
        connector = CONNECTORS[name].model_validate(settings)
        assert connector.type == name
    sf = SalesforceConnector.model_validate(yaml.safe_load(SOURCES_YAML)["salesforce"])
    assert sf.soql("contracts", sf._objects("contracts")[0]) == (
        "SELECT Id, AccountId, StartDate, EndDate, ARR__c FROM Contract WHERE Status = 'Activated'"
    )


@pytest.mark.parametrize(
    ("model", "settings", "problem"),
    [
        (SalesforceConnector, {"instance_url": "https://x.my.salesforce.com", "token_env": "T", "accounts": {"fields": {"seats": "Seats__c"}}},
         "seats not among the accounts columns"),
        (SalesforceConnector, {"instance_url": "https://x.my.salesforce.com", "token_env": "T",
                               "activities": [{"object": "Call__c", "fields": {"activity_id": "Id"}}]},
         "activities (Call__c): no field mapped to required column(s) account_id, type, occurred_at"),
        (HubSpotConnector, {"token_env": "T", "engagements": [{"object": "2-1"}]}, "engagements (2-1): no field mapped"),
        (ZendeskConnector, {"subdomain": "acme", "base_url": "https://acme.zendesk.com", "email_env": "E", "token_env": "T"},
         "either `subdomain`"),
        (DelightedConnector, {"api_key_env": "K", "page_size": 500}, "less than or equal to 100"),
    ],
)
def test_wrong_settings_are_refused_when_sources_yaml_is_read(model, settings, problem):
    with pytest.raises(ValidationError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        model.model_validate(settings)


# --- values --------------------------------------------------------------------------------------


def test_api_values_become_contract_text():
    assert as_text(50.0, "integer") == "50" and as_text(12000.5, "decimal") == "12000.5"
    assert as_text(1706000000, "timestamp") == "2024-01-23T08:53:20+00:00"
    assert as_text("1706000000000", "timestamp") == "2024-01-23T08:53:20+00:00"  # milliseconds
    assert as_text("2024-03-01T00:00:00Z", "date") == "2024-03-01"
    assert as_text("", "string") is None and as_text(True) == "true"
    record = {"Type": None, "TaskSubtype": "Call", "custom_fields": [{"id": 360001, "value": "ACME-1"}]}
    assert pick(record, "Type|TaskSubtype") == "Call"
    assert pick(record, "Type|=meeting") == "meeting"
    assert pick(record, "custom_fields.360001") == "ACME-1"
