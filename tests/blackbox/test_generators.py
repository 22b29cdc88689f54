"""Black-box tests of generators: `CREATE GENERATOR ... USING rt_cori`.

Flu2009 (EpiEstim's example 3: parametric serial interval, mean 2.6 d, sd
1.5 d) goes in as events; the Rt events the generator derives, read back
through a view, must equal EpiEstim's full-precision output at the
tolerances of its SOURCE.md.  A restart re-derives the same events, which
the log recognises by their ids: nothing is appended twice.
"""
import csv
import datetime as dt
import json
import math
import re
import time
from pathlib import Path

import pytest

from conftest import run_payi
from test_commands import assert_error
from test_views import post_events, start, view_rows   # noqa: F401  (start is a fixture)

HERE = Path(__file__).resolve().parent
EPI = HERE / "specs" / "epi.payi"
RT_DATA = next(p for p in (HERE.parent / "data" / "rt", Path("/work/shared/data/rt")) if p.exists())


def flu2009():
    with open(RT_DATA / "flu2009_incidence.csv") as f:
        return [(r["date"], int(r["I"])) for r in csv.DictReader(f)]


def example3():
    with open(RT_DATA / "epiestim_flu2009_example3_parametric_si_mean2.6_sd1.5.csv") as f:
        return list(csv.DictReader(f))


def incidence(region, days):
    return [(f"inc-{region}", {"type": "Incidence", "data": {"region": region, "day": d, "cases": n}})
            for d, n in days]


def wait_rows(s, region, n, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        rows = view_rows(s, "rt_by_region", s.head(), f"&region={region}&order=day")
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_rt_equals_epiestim_example3_and_a_restart_appends_nothing(start, tmp_path):
    data = tmp_path / "d"
    s = start(data=data, spec=EPI)
    days = flu2009()
    post_events(s, incidence("flu", days))
    want = example3()
    rows = wait_rows(s, "flu", len(want))
    assert len(rows) == len(want), rows
    first = dt.date.fromisoformat(days[0][0])
    for r, w in zip(rows, want):
        assert r["day"] == (first + dt.timedelta(days=int(w["t_end"]) - 1)).isoformat()
        for col, ref, tol in [("mean", "mean", 1e-10), ("sd", "std", 1e-10), ("median", "median", 1e-9),
                              ("q025", "q0025", 1e-9), ("q975", "q0975", 1e-9)]:
            assert math.isclose(r[col], float(w[ref]), rel_tol=tol), (r["day"], col, r[col], w[ref])
    assert len(wait_forecast(s, "flu", days[-1][0])) == 7   # the look ahead is in the log too
    head = s.head()
    assert s.stop() == 0
    s2 = start(data=data, spec=EPI)
    time.sleep(1.5)                              # the generator replays its inputs from 0
    status, _, raw, _ = s2.get("/metrics")
    assert s2.head() == head, "a restart appended derived events again"
    assert len(wait_rows(s2, "flu", len(want))) == len(want)


def test_streaming_equals_batch_and_gaps_count_zero(start):
    s = start(spec=EPI)
    days = flu2009()
    # live, one day at a time, for one region; all at once for another
    for d in days:
        post_events(s, incidence("live", [d]))
    post_events(s, incidence("batch", days))
    # a region whose zero days are simply missing gives the same estimates
    post_events(s, incidence("sparse", [d for d in days if d[1] != 0]))
    live = wait_rows(s, "live", 25)
    batch = wait_rows(s, "batch", 25)
    sparse = wait_rows(s, "sparse", 25)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "region"} for r in rows]   # noqa: E731
    assert strip(live) == strip(batch)
    assert len(live) == 25
    # the sparse series ends at its last non-zero day: up to there it is the same
    assert len(sparse) >= 20 and strip(sparse) == strip(batch)[:len(sparse)]


def test_late_value_is_not_applied(start):
    s = start(spec=EPI)
    days = flu2009()[:12]
    post_events(s, incidence("late", days))
    rows = wait_rows(s, "late", 5)
    post_events(s, incidence("late", [days[3]]))       # a day already passed
    time.sleep(0.5)
    assert view_rows(s, "rt_by_region", s.head(), "&region=late&order=day") == rows


def wait_forecast(s, region, origin, timeout=20):
    """The forecast rows of region once the latest origin is `origin`."""
    deadline = time.monotonic() + timeout
    while True:
        rows = view_rows(s, "forecast_by_region", s.head(), f"&region={region}&order=day")
        latest = [r for r in rows if r["origin_day"] == origin]
        if len(latest) == 7 or time.monotonic() > deadline:
            return latest
        time.sleep(0.1)


def series(start_day, values):
    d0 = dt.date.fromisoformat(start_day)
    return [((d0 + dt.timedelta(days=i)).isoformat(), v) for i, v in enumerate(values)]


def test_forecast_of_a_steady_series_is_flat_and_covers_it(start, tmp_path):
    days = series("2021-03-01", [100] * 60)
    s = start(data=tmp_path / "a", spec=EPI)
    post_events(s, incidence("steady", days))
    rows = wait_forecast(s, "steady", "2021-04-29")
    assert [r["day"] for r in rows] == [f"2021-04-{d:02d}" for d in (30,)] + [f"2021-05-{d:02d}" for d in range(1, 7)]
    for r in rows:
        # Rt of a steady series is 1 and so is the expected count: 100/day.
        assert 85 <= r["median"] <= 115, r
        assert r["q025"] < 100 < r["q975"], r
        assert r["q025"] <= r["median"] <= r["q975"], r
    status, _, raw, _ = s.get("/metrics")
    emitted = int(re.search(rb'payi_generator_emitted_total\{generator="forecast"\} (\d+)\n', raw).group(1))
    assert emitted >= 7 and emitted % 7 == 0, raw      # whole forecasts of 7 days (one, unless the input paused)
    assert re.search(rb'payi_generator_keys\{generator="rt"\} 1\n', raw), raw
    assert re.search(rb'payi_generator_looking_ahead\{generator="forecast"\} 0\n', raw), raw
    # the same inputs on another server give the same forecast, bit for bit
    s2 = start(data=tmp_path / "b", spec=EPI)
    post_events(s2, incidence("steady", days))
    assert wait_forecast(s2, "steady", "2021-04-29") == rows


def test_forecast_follows_each_new_day_and_a_restart_appends_nothing(start, tmp_path):
    data = tmp_path / "d"
    grow = [round(20 * 1.05 ** i) for i in range(50)]
    days = series("2021-01-01", grow)
    s = start(data=data, spec=EPI)
    post_events(s, incidence("grow", days))
    first = wait_forecast(s, "grow", "2021-02-19")
    assert len(first) == 7
    medians = [r["median"] for r in first]
    assert medians == sorted(medians) and medians[-1] > grow[-1], medians   # growth goes on
    post_events(s, incidence("grow", series("2021-02-20", [grow[-1] + 10])))
    nxt = wait_forecast(s, "grow", "2021-02-20")
    assert [r["day"] for r in nxt][0] == "2021-02-21" and len(nxt) == 7
    time.sleep(0.5)
    head = s.head()
    assert s.stop() == 0
    s2 = start(data=data, spec=EPI)
    assert wait_forecast(s2, "grow", "2021-02-20") == nxt
    time.sleep(1.5)   # replayed to the head, looked ahead again: the same ids
    assert s2.head() == head, "a restart appended the forecast again"


@pytest.mark.parametrize("gen,message", [
    ("CREATE GENERATOR g USING nope FROM Incidence KEY region DAY day VALUE cases EMIT RtEstimated;",
     r"spec\.payi:7:26: unknown generator kind nope"),
    ("CREATE GENERATOR g USING rt_cori FROM Incidence KEY region DAY day VALUE cases WITH (si_mena = 3) EMIT RtEstimated;",
     r"spec\.payi:7:86: rt_cori has no parameter si_mena"),
    ("CREATE GENERATOR g USING rt_cori FROM Incidence KEY region DAY cases VALUE cases EMIT RtEstimated;",
     r"spec\.payi:7:\d+: DAY over the fields of Incidence must be date"),
    ("CREATE GENERATOR g USING rt_cori FROM Incidence KEY region DAY day VALUE region EMIT RtEstimated;",
     r"spec\.payi:7:\d+: VALUE over the fields of Incidence must be bigint or double precision"),
    ("CREATE GENERATOR g USING rt_cori FROM Incidence KEY region DAY day VALUE cases EMIT Incidence;",
     r"spec\.payi:7:\d+: generator g emits Incidence, which needs the field mean double precision"),
    ("CREATE GENERATOR g USING rt_cori FROM Incidence KEY region DAY day VALUE cases WITH (si_mean = 0.5) EMIT RtEstimated;",
     r"spec\.payi:7:18: generator g: .*mean"),
    ("CREATE GENERATOR g USING rt_cori FROM Nope KEY region DAY day VALUE cases EMIT RtEstimated;",
     r"spec\.payi:7:39: FROM: event type \"Nope\" is not declared"),
    ("CREATE GENERATOR g USING renewal_forecast FROM Incidence KEY region DAY day VALUE cases WITH (horizon = 0) EMIT Fc;",
     r"spec\.payi:7:18: generator g: horizon must be a whole number of days from 1 to 64"),
    ("CREATE GENERATOR g USING renewal_forecast FROM Incidence KEY region DAY day VALUE cases WITH (horizon = 65) EMIT Fc;",
     r"spec\.payi:7:18: generator g: horizon must be a whole number of days from 1 to 64"),
    ("CREATE GENERATOR g USING renewal_forecast FROM Incidence KEY region DAY day VALUE cases WITH (paths = 0.5) EMIT Fc;",
     r"spec\.payi:7:18: generator g: paths must be a whole number"),
    ("CREATE GENERATOR g USING renewal_forecast FROM Incidence KEY region DAY day VALUE cases EMIT RtEstimated;",
     r"spec\.payi:7:\d+: generator g emits RtEstimated, which needs the field origin_day date"),
])
def test_generator_mistakes_refuse_to_start(tmp_path, gen, message):
    spec = tmp_path / "spec.payi"
    spec.write_text("CREATE EVENT Incidence (region text NOT NULL, day date NOT NULL, cases bigint NOT NULL);\n"
                    "CREATE EVENT RtEstimated (region text NOT NULL, day date NOT NULL,\n"
                    "  mean double precision, sd double precision, median double precision,\n"
                    "  q025 double precision, q975 double precision);\n"
                    "CREATE EVENT Fc (region text NOT NULL, origin_day date NOT NULL, day date NOT NULL,"
                    " median double precision, q025 double precision, q975 double precision);\n"
                    "-- the generator below is the mistake\n" + gen + "\n")
    r = run_payi(["serve", "--data", str(tmp_path / "d"), "--spec", str(spec), "--listen", "127.0.0.1:0"], timeout=30)
    assert r.rc == 1, r
    assert re.search(message, r.err), r.err
    assert not (tmp_path / "d").exists()
