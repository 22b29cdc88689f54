"""The COVID-19 app (examples/covid) on the real JHU CSSE files.

`payi ingest` reads the files shipped in examples/covid/data; the views are
then checked against an independent computation from the same CSVs with
Python's csv module: every country's totals, and a sample of daily values.
Re-ingesting the same files must add nothing.
"""
import csv
import datetime as dt
import gzip
import io
import random
from pathlib import Path

import pytest

from conftest import REPO, run_payi
from test_views import start, view_rows   # noqa: F401  (start is a fixture)

APP = REPO / "examples" / "covid"
SPEC = APP / "covid.payi"
DATA = APP / "data"
NON_COUNTRIES = {"Antarctica", "Diamond Princess", "MS Zaandam", "Summer Olympics 2020", "Winter Olympics 2022"}


def jhu(name):
    """{country: [cumulative per day]} summed over the country's rows, and the dates."""
    with gzip.open(DATA / name, "rt", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    days = [dt.datetime.strptime(h, "%m/%d/%y").date() for h in header[4:]]
    out = {}
    for r in rows[1:]:
        country = r[1]
        if country in NON_COUNTRIES:
            continue
        vals = [int(v) for v in r[4:]]
        acc = out.setdefault(country, [0] * len(vals))
        for i, v in enumerate(vals):
            acc[i] += v
    return out, days


@pytest.fixture(scope="module")
def truth():
    cases, days = jhu("time_series_covid19_confirmed_global.csv.gz")
    deaths, days2 = jhu("time_series_covid19_deaths_global.csv.gz")
    assert days == days2
    return cases, deaths, days


def test_the_app_equals_an_independent_computation_from_the_csvs(start, tmp_path, truth):
    cases, deaths, days = truth
    data = tmp_path / "covid"
    r = run_payi(["ingest", "--spec", str(SPEC), "--data", str(data), "--durability", "none",
                  f"ReportCases={DATA / 'time_series_covid19_confirmed_global.csv.gz'}",
                  f"ReportDeaths={DATA / 'time_series_covid19_deaths_global.csv.gz'}"], timeout=300)
    assert r.rc == 0, r
    n = len(cases) * len(days)
    assert f"{2 * n} commands" in r.err and "0 failed" in r.err, r.err
    s = start(data=data, spec=SPEC)
    head = s.head()
    totals = {row["country"]: row for row in view_rows(s, "totals_by_country", head, "&limit=100000")}
    assert set(totals) == set(cases)
    for country in cases:
        t = totals[country]
        assert (t["cases"], t["deaths"]) == (cases[country][-1], deaths[country][-1]), country
        assert t["last_day"] == days[-1].isoformat()
        first = next((days[i] for i, v in enumerate(cases[country]) if v > (cases[country][i - 1] if i else 0)), None)
        assert t["first_case_day"] == (first.isoformat() if first else None), country
    civ = totals["Cote d'Ivoire"]
    assert (civ["cases"], civ["deaths"]) == (88263, 834)
    # daily values: the difference of cumulatives (corrections included, negative)
    rnd = random.Random(5)
    for country in rnd.sample(sorted(cases), 12) + ["Cote d'Ivoire"]:
        rows = {row["day"]: row for row in view_rows(s, "daily_by_country", head,
                                                      f"&country={country.replace(' ', '%20')}&limit=100000")}
        for i in rnd.sample(range(len(days)), 40):
            want_c = cases[country][i] - (cases[country][i - 1] if i else 0)
            want_d = deaths[country][i] - (deaths[country][i - 1] if i else 0)
            got = rows[days[i].isoformat()]
            assert (got["new_cases"], got["new_deaths"]) == (want_c, want_d), (country, days[i])
    # the correction of 2020-12-16 in Côte d'Ivoire is a visible event, not dropped
    civ_rows = {row["day"]: row for row in view_rows(s, "daily_by_country", head,
                                                      "&country=Cote%20d'Ivoire&limit=100000")}
    assert civ_rows["2020-12-16"]["new_cases"] == -34
    assert s.stop() == 0
    # re-ingesting the same files adds nothing
    r = run_payi(["ingest", "--spec", str(SPEC), "--data", str(data), "--durability", "none",
                  f"ReportCases={DATA / 'time_series_covid19_confirmed_global.csv.gz'}"], timeout=300)
    assert r.rc == 0 and f" 0 appended 0 events, {n} changed nothing" in r.err, r.err


def test_ingest_refuses_bad_input(tmp_path):
    r = run_payi(["ingest", "--spec", str(SPEC), "--data", str(tmp_path / "d"), "Nope=x.csv"])
    assert r.rc == 2 and 'no command "Nope"' in r.err, r
    r = run_payi(["ingest", "--spec", str(SPEC), "--data", str(tmp_path / "d"), "x.csv"])
    assert r.rc == 2 and "no command" in r.err, r
    bad = tmp_path / "bad.csv"
    bad.write_text("Province/State,Country/Region,Lat,Long,1/22/20,1/23/20\n,Somewhere,0,0,1,x2\n")
    r = run_payi(["ingest", "--spec", str(SPEC), "--data", str(tmp_path / "d"), f"ReportCases={bad}"])
    assert r.rc == 1 and "bad.csv:2:" in r.err and "x2" in r.err, r
