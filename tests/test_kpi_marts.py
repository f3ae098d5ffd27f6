"""The KPI marts (dbt/models/marts/kpi) on a small hand-computed example: a real `dbt build` into a
temporary DuckDB, as tests/test_dbt_models.py does.

Today is 2026-02-15 (OUTCOMES_TODAY). Two periods of renewals, December 2025 and January 2026:

    account  segment     CSM  term ending   ARR   what happened                 period
    K1       enterprise  ana  2025-12-31   1000   renewed at 1200 (expansion)    Dec
    K2       enterprise  ben  2025-12-31   2000   renewed at 1500 (contraction)  Dec
    K3       smb         ana  2025-12-31    500   no successor: churned          Dec
    K5       mid_market  ana  (starts 2025-12-15, 600): a new logo mid-period, not up for renewal
    K4       smb         ben  2026-01-31    800   renewed at 800                 Jan
    K6       mid_market  ben  2026-01-31    400   renewed at 700 on day 10       Jan
    K7       smb         ana  2026-01-31    300   no successor yet: pending      Jan

December: up for renewal 3500; kept min(1200, 1000) + min(1500, 2000) = 2500; expansion 200;
GRR 2500/3500, NRR 2700/3500. January: up 1200 (K7 pending, left out); kept 800 + 400 = 1200;
GRR 1.0 (K6's +300 is expansion, not retention), NRR 1500/1200.

The accounts export changed after the first load (2024-12-01); the marts credit the segment and
CSM of the time (docs/kpis.md), never today's:

    K1  enterprise/ana -> mid_market/ben on 2026-01-05: its December renewal and NPS stay ana's
        and enterprise's, its January NPS answer is ben's and mid_market's
    K3  closed by the load of its end_date 2025-12-31 (owner emptied, churned): the churn is
        ana's, read on the day before the end_date
    K5  handed from ana to ben on 2026-01-20: the December new logo stays ana's

and the users export too: U6 moved from K2 to K1 on 2026-01-05, so its seat is K2's (ben's) in
December and K1's in January.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

import duckdb

from tests.test_dbt_models import FIRST_LOAD, RAW_ROWS, UTC, node_statuses, run_dbt, write_raw

D = dt.date
T = dt.datetime
DEC, JAN = D(2025, 12, 1), D(2026, 1, 1)

ACCOUNTS = [
    ("K1", "One", "mid_market", "ben@vendor.test", "pro", 10, "active", T(2024, 12, 1)),
    ("K2", "Two", "enterprise", "ben@vendor.test", "pro", 10, "active", T(2024, 12, 1)),
    ("K3", "Three", "smb", "", "starter", 5, "churned", T(2024, 12, 1)),
    ("K4", "Four", "smb", "ben@vendor.test", "starter", 5, "active", T(2025, 1, 1)),
    ("K5", "Five", "mid_market", "ben@vendor.test", "pro", 5, "active", T(2025, 12, 1)),
    ("K6", "Six", "mid_market", "ben@vendor.test", "pro", 5, "active", T(2025, 1, 1)),
    ("K7", "Seven", "smb", "ana@vendor.test", "starter", 5, "active", T(2025, 1, 1)),
]

# The earlier versions (valid from the first load until the load that changed them) and when
# the current ones took effect.
HANDOVER, CLOSED, HANDED_ON = T(2026, 1, 5, 6, tzinfo=UTC), T(2025, 12, 31, 18, tzinfo=UTC), T(2026, 1, 20, 6, tzinfo=UTC)
CURRENT_FROM = {"K1": HANDOVER, "K3": CLOSED, "K5": HANDED_ON, "U6": HANDOVER}
RETIRED = {
    "accounts": [
        ("K1", "One", "enterprise", "ana@vendor.test", "pro", 10, "active", T(2024, 12, 1), FIRST_LOAD, HANDOVER),
        ("K3", "Three", "smb", "ana@vendor.test", "starter", 5, "active", T(2024, 12, 1), FIRST_LOAD, CLOSED),
        ("K5", "Five", "mid_market", "ana@vendor.test", "pro", 5, "active", T(2025, 12, 1), FIRST_LOAD, HANDED_ON),
    ],
    "users": [("U6", "K2", "u6@six.test", "member", T(2025, 1, 1), T(2025, 1, 2), None, FIRST_LOAD, HANDOVER)],
}

CONTRACTS = [
    ("K1a", "K1", D(2025, 1, 1), D(2025, 12, 31), 1000.0),
    ("K1b", "K1", D(2026, 1, 1), D(2026, 12, 31), 1200.0),
    ("K2a", "K2", D(2025, 1, 1), D(2025, 12, 31), 2000.0),
    ("K2b", "K2", D(2026, 1, 1), D(2026, 12, 31), 1500.0),
    ("K3a", "K3", D(2025, 1, 1), D(2025, 12, 31), 500.0),
    ("K4a", "K4", D(2025, 2, 1), D(2026, 1, 31), 800.0),
    ("K4b", "K4", D(2026, 2, 1), D(2027, 1, 31), 800.0),
    ("K5a", "K5", D(2025, 12, 15), D(2026, 12, 14), 600.0),
    ("K6a", "K6", D(2025, 2, 1), D(2026, 1, 31), 400.0),
    ("K6b", "K6", D(2026, 2, 10), D(2027, 2, 9), 700.0),
    ("K7a", "K7", D(2025, 2, 1), D(2026, 1, 31), 300.0),
]

USERS = [
    ("U1", "K1", "u1@one.test", "admin", T(2025, 1, 1), T(2025, 1, 2), None),
    ("U2", "K1", "u2@one.test", "member", T(2025, 1, 1), T(2025, 1, 2), None),
    ("U9", "K1", "u9@one.test", "member", T(2026, 1, 5), T(2026, 1, 10), None),  # seated from January
    ("U3", "K2", "u3@two.test", "admin", T(2025, 1, 1), T(2025, 1, 2), None),
    ("U4", "K2", "u4@two.test", "member", T(2025, 1, 1), T(2025, 1, 2), T(2025, 12, 10)),  # seated in December only
    ("U5", "K3", "u5@three.test", "member", T(2025, 1, 1), None, None),  # never activated
    ("U6", "K1", "u6@six.test", "member", T(2025, 1, 1), T(2025, 1, 2), None),  # K2's until 2026-01-05
]

NPS = [
    ("N1", "K1", "U1", 10, "", T(2025, 12, 3, 9)),
    ("N2", "K1", "U2", 9, "", T(2025, 12, 4, 9)),
    ("N3", "K2", "U3", 3, "", T(2025, 12, 5, 9)),
    ("N4", "K3", "", 7, "", T(2025, 12, 6, 9)),  # no user: counts in NPS, not in the response rate
    ("N5", "K1", "U1", 6, "", T(2026, 1, 7, 9)),
]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("kpi")
    path = work / "warehouse.duckdb"
    rows = {**RAW_ROWS, "accounts": ACCOUNTS, "contracts": CONTRACTS, "users": USERS, "nps_responses": NPS,
            "tickets": [], "activities": [], "events": []}
    write_raw(path, rows, RETIRED, CURRENT_FROM)
    # stg_raw__accounts: the marts read the account history, and the contracts' relationship test the accounts
    result = run_dbt(path, work, "build", "--select", "+kpi_retention_monthly", "+kpi_nps_monthly", "stg_raw__accounts",
                     "--exclude", "tag:daily")
    assert result.success, node_statuses(result)
    statuses = node_statuses(result)
    grr_tests = [s for node, s in statuses.items() if node.startswith("test.cs_pipeline.grr_never_exceeds_100_percent")]
    assert grr_tests == ["pass"]
    return path


RETENTION = """
    select terms_up_for_renewal, terms_renewed, terms_churned, terms_pending, arr_up_for_renewal, arr_retained,
           arr_expansion, arr_contraction, arr_churned, arr_pending, new_logos, arr_new_logos,
           round(grr, 4), round(nrr, 4), round(renewal_rate, 4), round(logo_churn_rate, 4), round(arr_churn_rate, 4)
    from marts.kpi_retention_monthly where period_month = ? and segment = ? and owner_email = ?
"""


def query(warehouse: Path, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def retention(warehouse: Path, month: dt.date, segment: str = "all", owner: str = "all") -> tuple:
    return query(warehouse, RETENTION, [month, segment, owner])[0]


def test_december_renewals_with_expansion_contraction_churn_and_a_new_logo(warehouse):
    assert retention(warehouse, DEC) == (
        3, 2, 1, 0, 3500.0, 2500.0, 200.0, 500.0, 500.0, 0.0, 1, 600.0,
        round(2500 / 3500, 4), round(2700 / 3500, 4), round(2 / 3, 4), round(1 / 3, 4), round(500 / 3500, 4),
    )


def test_january_expansion_lifts_nrr_but_never_grr_above_100_percent(warehouse):
    assert retention(warehouse, JAN) == (
        2, 2, 0, 1, 1200.0, 1200.0, 300.0, 0.0, 0.0, 300.0, 0, 0.0,
        1.0, 1.25, 1.0, 0.0, 0.0,
    )
    # mid_market in January: only K6, renewed 400 -> 700
    assert retention(warehouse, JAN, segment="mid_market")[12:14] == (1.0, 1.75)


def test_per_segment_and_per_csm(warehouse):
    assert retention(warehouse, DEC, segment="enterprise")[12:14] == (round(2500 / 3000, 4), 0.9)
    assert retention(warehouse, DEC, segment="smb")[12:14] == (0.0, 0.0)
    assert retention(warehouse, DEC, owner="ana@vendor.test")[12:14] == (round(1000 / 1500, 4), 0.8)
    assert retention(warehouse, DEC, owner="ben@vendor.test")[12:14] == (0.75, 0.75)
    # the new logo K5 is ana's, in December, and is not up for renewal
    assert retention(warehouse, DEC, owner="ana@vendor.test")[10:12] == (1, 600.0)


def test_grr_is_at_most_one_everywhere(warehouse):
    assert query(warehouse, "select count(*) from marts.kpi_retention_monthly where grr > 1") == [(0,)]
    assert query(warehouse, "select max(nrr) > 1 from marts.kpi_retention_monthly") == [(True,)]


def test_one_row_per_month_and_audience(warehouse):
    rows = query(warehouse, "select segment, owner_email from marts.kpi_retention_monthly where period_month = ? order by 1, 2", [DEC])
    assert rows == [
        ("all", "all"), ("all", "ana@vendor.test"), ("all", "ben@vendor.test"),
        ("enterprise", "all"), ("mid_market", "all"), ("smb", "all"),
    ]


def test_nps_and_response_rate(warehouse):
    rows = query(
        warehouse,
        "select period_month, responses, promoters, passives, detractors, nps, responding_users, active_users, response_rate"
        " from marts.kpi_nps_monthly where segment = 'all' and owner_email = 'all' order by 1",
    )
    assert rows == [
        # Dec: 2 promoters, 1 passive, 1 detractor; U1, U2, U3 answered of U1, U2, U3, U4, U6 seated
        (DEC, 4, 2, 1, 1, 25.0, 3, 5, 0.6),
        # Jan: U1 detracts; seated: U1, U2, U9, U6, U3 (U4 left on Dec 10)
        (JAN, 1, 0, 0, 1, -100.0, 1, 5, 0.2),
    ]
    assert query(
        warehouse,
        "select owner_email, nps, response_rate from marts.kpi_nps_monthly where period_month = ? and segment = 'all'"
        " and owner_email <> 'all' order by 1", [DEC],
    ) == [("ana@vendor.test", 100.0 * (2 - 0) / 3, 1.0), ("ben@vendor.test", -100.0, 1 / 3)]  # U6 was K2's


def test_an_owner_change_between_periods_credits_each_period_to_the_csm_of_the_time(warehouse):
    """K1 was ana's (enterprise) in December and is ben's (mid_market) since 5 January."""
    def nps_by(column: str, month: dt.date) -> list[tuple]:
        other = "segment" if column == "owner_email" else "owner_email"
        return query(
            warehouse,
            f"select {column}, responses, nps, responding_users, active_users from marts.kpi_nps_monthly"
            f" where period_month = ? and {other} = 'all' and {column} <> 'all' order by 1", [month],
        )

    # December: K1's renewal and its two promoters are ana's and enterprise's
    assert retention(warehouse, DEC, owner="ana@vendor.test")[:3] == (2, 1, 1)  # K1 renewed, K3 churned
    assert retention(warehouse, DEC, owner="ben@vendor.test")[:3] == (1, 1, 0)  # K2 only
    assert nps_by("owner_email", DEC) == [
        ("ana@vendor.test", 3, 100.0 * 2 / 3, 2, 2), ("ben@vendor.test", 1, -100.0, 1, 3),
    ]
    assert [row[:2] for row in nps_by("segment", DEC)] == [("enterprise", 3), ("smb", 1)]
    # January: K1's detractor answer and its four seats (U6's now among them) are ben's and mid_market's
    assert nps_by("owner_email", JAN) == [("ben@vendor.test", 1, -100.0, 1, 5)]
    assert nps_by("segment", JAN) == [("enterprise", 0, None, 0, 1), ("mid_market", 1, -100.0, 1, 4)]
    # and nothing is credited to today's values where the past said otherwise
    assert query(warehouse, "select count(*) from marts.kpi_retention_monthly where owner_email = 'unassigned'") == [(0,)]
