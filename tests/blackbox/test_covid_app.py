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
import math
import random
import time
from pathlib import Path

import pytest

from conftest import REPO, run_payi
from test_views import start, view_rows   # noqa: F401  (start is a fixture)

APP = REPO / "examples" / "covid"
SPEC = APP / "covid.payi"
DATA = APP / "data"
RT_DATA = next(p for p in (REPO / "tests" / "data" / "rt", Path("/work/shared/data/rt")) if p.exists())
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


def si_weights():
    """EpiEstim's discr_si(k, 4.7, 2.9), k = 0..1142, as computed by R."""
    with open(RT_DATA / "si_distr_parametric_mean4.7_sd2.9.csv") as f:
        return [float(r["w"]) for r in csv.DictReader(f)]


def wait_view(s, name, query, ready, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        rows = view_rows(s, name, s.head(), query)
        if ready(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def check_rt_and_forecast_of_cote_divoire(s, cumulative, days):
    """Rt: Cori et al. recomputed here from the CSV's cumulative counts
    (daily = difference, negatives clamped to 0, Λ over the whole R-computed
    serial interval, 7-day windows, prior Gamma(1, 5)); the generator must
    agree on the posterior mean and sd of the last days.  The forecast: 14
    days from the last day, its interval around its median."""
    daily = [max(0, v - (cumulative[i - 1] if i else 0)) for i, v in enumerate(cumulative)]
    w = si_weights()
    lam = [sum(w[k] * daily[t - k] for k in range(1, t + 1)) for t in range(len(daily))]
    last = days[-1].isoformat()
    rows = wait_view(s, "rt_by_country", "&country=Cote%20d'Ivoire&limit=100000",
                     lambda rs: any(r["day"] == last for r in rs))
    rt = {r["day"]: r for r in rows}
    assert len(rt) == len(days) - 7, len(rt)          # from the first full window (t_end = 8)
    for t in list(range(len(days) - 30, len(days))) + [7, 100, 500]:
        shape = 1 + sum(daily[t - 6:t + 1])
        scale = 1 / (1 / 5 + sum(lam[t - 6:t + 1]))
        got = rt[days[t].isoformat()]
        assert math.isclose(got["mean"], shape * scale, rel_tol=1e-9), (days[t], got, shape * scale)
        assert math.isclose(got["sd"], math.sqrt(shape) * scale, rel_tol=1e-9), (days[t], got)
        assert got["q025"] < got["median"] < got["q975"], got
    fc = wait_view(s, "forecast_by_country", "&country=Cote%20d'Ivoire&limit=100000",
                   lambda rs: sum(r["origin_day"] == last for r in rs) == 14)
    latest = [r for r in fc if r["origin_day"] == last]
    assert [r["day"] for r in latest] == [(days[-1] + dt.timedelta(days=h)).isoformat() for h in range(1, 15)]
    for r in latest:
        assert 0 <= r["q025"] <= r["median"] <= r["q975"], r


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
    check_rt_and_forecast_of_cote_divoire(s, cases["Cote d'Ivoire"], days)
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
