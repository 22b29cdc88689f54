-- covid_pg.sql — the COVID-19 case study done "the PostgreSQL way": load the
-- two JHU CSSE files as published, then compute in SQL what payi's
-- examples/covid/covid.payi computes (the views daily_by_country,
-- totals_by_country, weekly_world, and Rt per country and day as the rt_cori
-- generator does).  bench/covid.sh times it end to end against
-- `payi demo --fast` and cross-checks the results.
--
-- Run on an empty database, as a superuser (COPY FROM PROGRAM), by psql:
--   psql -X -v ON_ERROR_STOP=1 -v confirmed=/abs/confirmed.csv.gz \
--        -v deaths=/abs/deaths.csv.gz -v si=/abs/si_distr_parametric_mean4.7_sd2.9.csv \
--        -f bench/lib/covid_pg.sql
-- The three files must be readable by the server's user.  Each step starts
-- with a line "@step NAME" and \timing prints "Time: X ms" after each
-- statement, so the harness can say where the time went.
--
-- Every table is an ordinary (logged, crash-safe) table: payi's events and
-- views are durable too.  The view tables get the primary key of their
-- group, as payi's view tables have, so that they can be read by key.

\set ON_ERROR_STOP 1
\timing on

-- What a PostgreSQL user sets for a batch job like this one: with the default
-- 4 MB of work_mem the Λ step below sorts its 13 million rows on disk
-- (external merge) instead of aggregating them in a ~115 MB hash table.
SET work_mem = '256MB';
\set confirmed_head 'gunzip -c ' :confirmed ' | head -n 1'
\set deaths_head 'gunzip -c ' :deaths ' | head -n 1'
\set confirmed_gunzip 'gunzip -c ' :confirmed
\set deaths_gunzip 'gunzip -c ' :deaths

-- ------------------------------------------------------------------ 1. load
--
-- The files are wide: Province/State, Country/Region, Lat, Long, then one
-- column per day (M/D/YY; 1,143 of them), one row per location (289), CRLF,
-- RFC 4180 quotes ("Korea, South").  The load path: COPY ... (FORMAT csv)
-- straight into a staging table with one integer column per day, generated
-- from the header.  Why this one:
--   - COPY's own CSV parser does the quoting, the CRLF and the integer
--     checks (an empty or non-numeric cell is an error, not a NULL or a 0);
--     nothing is parsed by hand in SQL;
--   - integer, not bigint or text: a heap row must fit in one 8 kB page and
--     cannot be TOASTed column by column when its columns are small, so 1,143
--     bigints (9.1 kB) or 1,143 short texts (up to ~11 kB for the US row) are
--     refused with "row is too big"; 1,143 integers are 4.6 kB.  The largest
--     cumulative (US, 103.8 M) is far below 2^31, and COPY would stop with an
--     "out of range" error rather than wrap;
--   - the alternatives cost more: a one-text-column load must split CSV
--     with regexps (quotes) and a jsonb row needs a second pass; PostgreSQL
--     allows 1,600 columns, so 1,147 fit.
-- gunzip runs on the server (COPY FROM PROGRAM): the files are decompressed
-- and streamed into COPY as they are read, with no client round trips.

\echo @step header
-- The date columns, from each file's header line.  Both files must have the
-- same columns, each exactly one day after the one before (payi's rule H1 in
-- src/ingest/covid.c: a missing column would shift the series silently).
CREATE TABLE jhu_header (line text NOT NULL);
COPY jhu_header FROM PROGRAM :'confirmed_head';
COPY jhu_header FROM PROGRAM :'deaths_head';

CREATE TABLE jhu_days AS
  SELECT (c.i - 4)::int AS i, c.label, to_date(c.label, 'MM/DD/YY') AS day
  FROM (SELECT line FROM jhu_header LIMIT 1) h,
       unnest(string_to_array(h.line, ',')) WITH ORDINALITY AS c(label, i)
  WHERE c.i > 4;

DO $$
DECLARE
  n int;
  bad text;
BEGIN
  IF (SELECT count(DISTINCT line) FROM jhu_header) <> 1 OR (SELECT count(*) FROM jhu_header) <> 2 THEN
    RAISE EXCEPTION 'the confirmed and deaths files do not have the same header';
  END IF;
  IF (SELECT split_part(line, ',', 1) || ',' || split_part(line, ',', 2) || ',' || split_part(line, ',', 3)
             || ',' || split_part(line, ',', 4) FROM jhu_header LIMIT 1) <> 'Province/State,Country/Region,Lat,Long' THEN
    RAISE EXCEPTION 'the header does not start with Province/State,Country/Region,Lat,Long';
  END IF;
  SELECT count(*) INTO n FROM jhu_days;
  SELECT min(label) INTO bad FROM jhu_days d
    WHERE to_char(d.day, 'FMMM/FMDD/YY') <> d.label
       OR d.day <> (SELECT day FROM jhu_days WHERE i = 1) + (d.i - 1);
  IF n < 8 OR bad IS NOT NULL THEN
    RAISE EXCEPTION 'date columns are not consecutive days M/D/YY (% columns, first bad: %)', n, bad;
  END IF;
END
$$;

\echo @step create_staging
-- jhu_confirmed / jhu_deaths (province, country, lat, long, d1 .. d1143).
-- country in the "C" collation: names are identifiers, byte order is payi's
-- order (strcmp), and every sort and join on country below compares bytes
-- instead of calling the locale's strcoll.
SELECT format('CREATE TABLE jhu_%s (province text, country text COLLATE "C" NOT NULL, lat float8, long float8, %s)',
              kind, string_agg(format('d%s integer NOT NULL', i), ', ' ORDER BY i))
FROM jhu_days, (VALUES ('confirmed'), ('deaths')) AS k(kind)
GROUP BY kind
\gexec

\echo @step copy_confirmed
COPY jhu_confirmed FROM PROGRAM :'confirmed_gunzip' (FORMAT csv, HEADER true);
\echo @step copy_deaths
COPY jhu_deaths FROM PROGRAM :'deaths_gunzip' (FORMAT csv, HEADER true);

-- ------------------------------------------------------------------ 2. unpivot
--
-- (country, day, cumulative cases, cumulative deaths), every row of a
-- country summed into it (rule P of src/ingest/covid.c: provinces, overseas
-- territories, and Canada's "Diamond Princess"/"Grand Princess" rows, which
-- are Province/State values), leaving out the five Country/Region values
-- that are not countries (rule N: research stations, two cruise ships, two
-- Olympic Games).  The two files list the same locations (checked), so each
-- location's two rows are joined and unpivoted together: one unnest of two
-- arrays of the day columns, generated from jhu_days, one aggregation, and
-- one sort for the lag() below instead of two of each and a join.

\echo @step unpivot
CREATE TABLE jhu_non_countries (country text COLLATE "C" PRIMARY KEY);
INSERT INTO jhu_non_countries VALUES
  ('Antarctica'), ('Diamond Princess'), ('MS Zaandam'), ('Summer Olympics 2020'), ('Winter Olympics 2022');

DO $$
DECLARE
  odd text;
BEGIN
  SELECT min(coalesce(c.country, d.country) || ' / ' || coalesce(c.province, d.province, '')) INTO odd
  FROM jhu_confirmed AS c FULL JOIN jhu_deaths AS d
       ON d.country = c.country AND coalesce(d.province, '') = coalesce(c.province, '')
  WHERE c.country IS NULL OR d.country IS NULL;
  IF odd IS NOT NULL THEN
    RAISE EXCEPTION 'a location is in one file but not the other: %', odd;
  END IF;
  -- payi's rule H5: a repeated row would be counted twice in the sum.
  IF EXISTS (SELECT FROM jhu_confirmed GROUP BY country, coalesce(province, '') HAVING count(*) > 1)
     OR EXISTS (SELECT FROM jhu_deaths GROUP BY country, coalesce(province, '') HAVING count(*) > 1) THEN
    RAISE EXCEPTION 'a (Province/State, Country/Region) pair appears twice in a file';
  END IF;
END
$$;

SELECT format($f$CREATE TABLE jhu_cumulative AS
  SELECT c.country, %L::date + (u.i - 1)::int AS day,
         sum(u.cases)::bigint AS cases, sum(u.deaths)::bigint AS deaths
  FROM jhu_confirmed AS c
  JOIN jhu_deaths AS d ON d.country = c.country AND coalesce(d.province, '') = coalesce(c.province, '')
  CROSS JOIN LATERAL unnest(ARRAY[%s], ARRAY[%s]) WITH ORDINALITY AS u(cases, deaths, i)
  WHERE c.country NOT IN (SELECT country FROM jhu_non_countries)
  GROUP BY c.country, u.i$f$,
              (SELECT day FROM jhu_days WHERE i = 1),
              string_agg(format('c.d%s', i), ', ' ORDER BY i), string_agg(format('d.d%s', i), ', ' ORDER BY i))
FROM jhu_days
\gexec

-- ------------------------------------------------------------------ 3-4. views
--
-- Cumulative -> daily with lag() per country.  The first day's new count is
-- its cumulative (payi's aggregate starts at 0), and a cumulative lower than
-- the day before is kept as a negative new count: payi's CasesCorrected /
-- DeathsCorrected, which its views sum like any other report.

\echo @step daily_by_country
CREATE TABLE daily_by_country AS
  SELECT country, day,
         cases - lag(cases, 1, 0::bigint) OVER w AS new_cases,
         deaths - lag(deaths, 1, 0::bigint) OVER w AS new_deaths
  FROM jhu_cumulative
  WINDOW w AS (PARTITION BY country ORDER BY day);
ALTER TABLE daily_by_country ADD PRIMARY KEY (country, day);

\echo @step totals_by_country
CREATE TABLE totals_by_country AS
  SELECT country, sum(new_cases)::bigint AS cases, sum(new_deaths)::bigint AS deaths,
         min(day) FILTER (WHERE new_cases > 0) AS first_case_day, max(day) AS last_day
  FROM daily_by_country GROUP BY country;
ALTER TABLE totals_by_country ADD PRIMARY KEY (country);

\echo @step weekly_world
CREATE TABLE weekly_world AS
  SELECT date_trunc('week', day)::date AS week, sum(new_cases)::bigint AS new_cases,
         sum(new_deaths)::bigint AS new_deaths
  FROM daily_by_country GROUP BY 1;
ALTER TABLE weekly_world ADD PRIMARY KEY (week);

-- ------------------------------------------------------------------ 5. Rt
--
-- Cori et al. (2013) as src/gen/rt.h computes it (and EpiEstim; the formula
-- is in rt/SOURCE.md of the shared data):
--   I_t  = max(new cases, 0), t = 1, 2, ... from the country's first day
--          (negative corrections clamped: EpiEstim refuses them);
--   Λ_t  = Σ_{k=1}^{min(t-1,K)} w_k I_{t-k}, a join of the series with the SI;
--   windows of 7 days [t-6, t], estimated for t >= 8 (day 1's cases are
--          "imported": they enter Λ but no window's numerator, so windows
--          start on day 2; the window also ends after the SI mean, 4.7);
--   shape = a + Σ I, scale = 1 / (1/b + Σ Λ) over the window, with the prior
--          a = (5/5)^2 = 1, b = 5^2/5 = 5; mean = shape·scale,
--          sd = sqrt(shape)·scale.
-- PostgreSQL has no gamma quantile function (qgamma), so this side computes
-- the mean and sd only; payi also computes the median and the 95 % interval
-- (three qgamma inversions per row), which this comparison leaves out in
-- PostgreSQL's favour.
--
-- The serial interval: EpiEstim's discr_si(k, 4.7, 2.9) for k = 0..1142 as
-- published in the shared data, truncated exactly as payi truncates it
-- (rt.c, si_cut 1e-14): K is the smallest k whose tail Σ_{j>k} w_j is at most
-- 1e-14 · Σ w, which keeps k <= 91.  A plain cut at k <= 60 (w_60 ≈ 2e-11)
-- looks negligible but is not: after a large wave I_{t-k} is hundreds of
-- times today's count, and the dropped tail moved posterior means by up to
-- 2e-5 relative (measured on this data; 9,616 estimates off by more than the
-- 1e-9 the cross-check allows).

\echo @step rt_si
CREATE TABLE rt_si (k int PRIMARY KEY, w float8 NOT NULL);
COPY rt_si FROM :'si' (FORMAT csv, HEADER true);
DELETE FROM rt_si WHERE k = 0 OR k > (
  SELECT min(k) FROM (
    SELECT k, coalesce(sum(w) OVER (ORDER BY k DESC ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS tail,
           sum(w) OVER () AS total
    FROM rt_si WHERE k >= 1) s
  WHERE tail <= 1e-14 * total);

\echo @step rt_incidence
-- One gapless daily series per country (the files have every day for every
-- row, checked above, so a frame of 7 rows is 7 days), keyed by a small
-- integer: grouping the next step's 13 million rows by (integer, integer)
-- is about 10 % cheaper than by (text, integer).
CREATE TABLE rt_country AS
  SELECT row_number() OVER (ORDER BY country)::int AS cid, country, min(day) AS first_day
  FROM daily_by_country GROUP BY country;
CREATE TABLE rt_incidence AS
  SELECT c.cid, (d.day - c.first_day) + 1 AS t, greatest(d.new_cases, 0)::float8 AS cases
  FROM daily_by_country AS d JOIN rt_country AS c USING (country);
ANALYZE rt_country, rt_incidence, rt_si;

\echo @step rt_lambda
-- Every day's cases spread forward over the next K days with the SI weights,
-- then summed per target day.  Days without cases add nothing to any Λ and
-- are left out of the join (64 % of the 224,028 days have cases; that saves
-- a quarter of this step); a day that receives nothing gets Λ = 0 below.
CREATE TABLE rt_lambda AS
  SELECT i.cid, i.t + s.k AS t, sum(s.w * i.cases) AS lambda
  FROM rt_incidence AS i CROSS JOIN rt_si AS s
  WHERE i.cases > 0 AND i.t + s.k <= (SELECT max(t) FROM rt_incidence)
  GROUP BY i.cid, i.t + s.k;

\echo @step rt_by_country
-- The 7-day window sums; day 1 (Λ undefined, cases imported) contributes
-- nothing to either.  Sums of whole numbers in float8 are exact here (< 2^53).
CREATE TABLE rt_by_country AS
  SELECT c.country, c.first_day + (x.t - 1) AS day, x.shape * x.scale AS mean, sqrt(x.shape) * x.scale AS sd
  FROM (
    SELECT i.cid, i.t,
           1.0::float8 + sum(CASE WHEN i.t >= 2 THEN i.cases ELSE 0 END) OVER w AS shape,
           1.0::float8 / (1.0::float8 / 5.0::float8 + sum(coalesce(l.lambda, 0)) OVER w) AS scale
    FROM rt_incidence AS i LEFT JOIN rt_lambda AS l USING (cid, t)
    WINDOW w AS (PARTITION BY i.cid ORDER BY i.t ROWS BETWEEN 6 PRECEDING AND CURRENT ROW)) AS x
  JOIN rt_country AS c USING (cid)
  WHERE x.t >= 8;
ALTER TABLE rt_by_country ADD PRIMARY KEY (country, day);

\echo @step done
