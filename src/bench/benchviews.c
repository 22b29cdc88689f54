/* benchviews.c — payi bench views: view maintenance measured on the Nexmark
 * benchmark; payi bench views-latency: command acknowledgement -> change on
 * /views/{name}/changes, at a fixed command rate.
 *
 * payi bench views
 *
 * 1. Events.  A deterministic Nexmark generator (below: the rules of the
 *    Nexmark generator of nexmark/nexmark, as ported by Beam and Feldera,
 *    driven by xoshiro256** from --seed) writes --events events into a
 *    fresh log: per 50 events 1 Person, 3 Auction, 46 Bid; bids go to the
 *    hot auction of the last 100 with probability 1/2 and come from the hot
 *    bidder with probability 3/4; prices 100 * 10^U(0,6); 4 hot channels and
 *    10,000 others; event time advances by 1/--rate s per event (Nexmark's
 *    default 10,000,000 events/s) from 2024-01-01T00:00:00Z.  Events are
 *    typed (the spec's schemas, schema_encode), appended as one event per
 *    append in submissions of 10,000 (durability fsync), a bid to its
 *    auction's stream "auction-<id>", a person to "person-<id>".
 *
 * 2. Runs (--run VIEWS=URL, repeatable; VIEWS is "all" or a comma list):
 *    the view engine is opened on the log with the selected views of the
 *    spec and the store URL, live, exactly as `payi serve` opens it; the
 *    run ends when every view's position reaches the log's head.  Measured:
 *    wall time (open -> last view at the head), the process's CPU time
 *    (getrusage RUSAGE_SELF: every thread, the view threads being almost all
 *    of it), the CPU time of each view's thread (its thread CPU clock: the
 *    threads started by view_engine_open, in creation order), and for a
 *    PostgreSQL store the server's CPU (utime+stime of every process in
 *    pg_stat_activity, from /proc).  The store must hold none of the views
 *    yet (a fresh SQLite file or PostgreSQL database per run).  Afterwards
 *    the rows are checked against what the generator counted (rows of q0,
 *    q1, q2; sums of the counts of q12, q15, q16, q17; q17's sum of prices).
 *
 *    There is no fold-only entry point in the view engine: every figure
 *    includes writing the rows to the store.  "events/s per core" below is
 *    events / CPU seconds of the stated threads, never events / wall.
 *
 * 3. Peers (--peer URL, --peer-sync URL): q17's aggregate (per auction and
 *    day: count, three FILTERed counts, min, max, sum; avg = sum / count at
 *    read time) maintained the usual way: one INSERT ... ON CONFLICT (auction,
 *    day) DO UPDATE per bid, a prepared statement, 1,000 per transaction,
 *    over the same events (taken from memory: the peer pays no log read).
 *    SQLite: WAL, synchronous=FULL (as payi's store).  PostgreSQL: libpq,
 *    text parameters; --peer pipelines each transaction (libpq pipeline
 *    mode: one round trip per 1,000 statements), --peer-sync waits for each
 *    statement's answer.  Each peer runs until it has consumed every event
 *    or --peer-seconds passed.
 *
 * payi bench views-latency: see latency_help below.
 */
#include "bench/benchviews.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/mem.h"
#include "base/timefmt.h"
#include "cli/cli.h"
#include "event/registry.h"
#include "log/log.h"
#include "spec/schema.h"
#include "spec/spec.h"
#include "store/store.h"
#include "view/view.h"

/* ------------------------------------------------------------ random numbers
 * xoshiro256** seeded through splitmix64: fast, and the same sequence on
 * every machine for a seed. */

typedef struct rng {
    uint64_t s[4];
} rng;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* Uniform in [0, n), n > 0 (Lemire's multiply; the bias is below 2^-40 here). */
static uint64_t rng_below(rng *r, uint64_t n) { return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64); }

static double rng_unit(rng *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

/* ------------------------------------------------------------ the Nexmark generator
 * Event number n (0-based) is a person when n % 50 < 1, an auction when
 * < 4, else a bid (GeneratorConfig: person 1, auction 3, bid 46).  Ids and
 * the hot/cold choices follow the generator's model classes. */

enum {
    NX_PERSON_PROP = 1, NX_AUCTION_PROP = 3, NX_BID_PROP = 46,
    NX_TOTAL_PROP = NX_PERSON_PROP + NX_AUCTION_PROP + NX_BID_PROP,
    NX_FIRST_PERSON_ID = 1000, NX_FIRST_AUCTION_ID = 1000, NX_FIRST_CATEGORY_ID = 10, NX_CATEGORIES = 5,
    NX_ACTIVE_PEOPLE = 1000, NX_PERSON_ID_LEAD = 10, NX_IN_FLIGHT_AUCTIONS = 100,
    NX_HOT_AUCTION_RATIO = 2, NX_HOT_BIDDERS_RATIO = 4, NX_HOT_SELLERS_RATIO = 4,
    NX_HOT_GROUP = 100,        /* hot ids are the first (auctions, sellers) or second (bidders) of each 100 */
    NX_CHANNELS = 10000, NX_HOT_CHANNELS_RATIO = 100,
    NX_AVG_PERSON_BYTES = 200, NX_AVG_AUCTION_BYTES = 500, NX_AVG_BID_BYTES = 100,
    NX_EXTRA_MAX = 640,
};

#define NX_BASE_TIME_US 1704067200000000LL   /* 2024-01-01T00:00:00Z */
#define NX_DEFAULT_RATE 10000000ULL          /* Nexmark's default first_event_rate */

typedef enum { NX_PERSON, NX_AUCTION, NX_BID } nx_kind;

typedef struct nx_event {
    nx_kind kind;
    uint64_t number;
    int64_t ts_us;
    /* person, auction */
    int64_t id;
    char name[40], email[24], card[24];
    uint32_t name_len, email_len, card_len;
    const char *city, *state;
    char item[24], desc[104];
    uint32_t item_len, desc_len;
    int64_t initial_bid, reserve, expires_us, seller, category;
    /* bid */
    int64_t auction, bidder, price;
    const char *channel, *url;
    uint32_t channel_len, url_len;
    char extra[NX_EXTRA_MAX];
    uint32_t extra_len;
} nx_event;

typedef struct nx_gen {
    rng r;
    uint64_t n;                /* events generated */
    uint64_t rate;             /* events per second of event time */
    char *chan_name[NX_CHANNELS];
    char *chan_url[NX_CHANNELS];
} nx_gen;

static const char *const hot_channels[] = {"Google", "Facebook", "Baidu", "Apple"};
static const char *const hot_urls[] = {
    "https://www.nexmark.com/googl/item.htm?query=1", "https://www.nexmark.com/meta/item.htm?query=1",
    "https://www.nexmark.com/bidu/item.htm?query=1", "https://www.nexmark.com/aapl/item.htm?query=1"};
static const char *const us_states[] = {"AZ", "CA", "ID", "OR", "WA", "WY"};
static const char *const us_cities[] = {"Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland",
                                        "Bend",    "Redmond",     "Seattle",       "Kent",  "Cheyenne"};
static const char *const first_names[] = {"Peter", "Paul",  "Luke",  "John",   "Saul",  "Vicky",
                                          "Kate",  "Julie", "Sarah", "Deiter", "Walter"};
static const char *const last_names[] = {"Shultz", "Abrams", "Spencer", "White", "Bartels",
                                         "Walton", "Smith",  "Jones",   "Noris"};
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static void nx_init(nx_gen *g, uint64_t seed, uint64_t rate)
{
    memset(g, 0, sizeof *g);
    rng_seed(&g->r, seed);
    g->rate = rate;
}

static void nx_release(nx_gen *g)
{
    for (int i = 0; i < NX_CHANNELS; i++) {
        free(g->chan_name[i]);
        free(g->chan_url[i]);
    }
}

static int64_t nx_time_us(const nx_gen *g, uint64_t n)
{
    return NX_BASE_TIME_US + (int64_t)((unsigned __int128)n * 1000000u / g->rate);
}

/* A random alphanumeric string of len bytes into out. */
static void rand_alnum(rng *r, char *out, uint32_t len)
{
    static const char an[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    for (uint32_t i = 0; i < len; i++)
        out[i] = an[rng_below(r, sizeof an - 1)];
}

/* next_string(max): 3..max characters. */
static uint32_t next_string(rng *r, char *out, uint32_t max)
{
    uint32_t len = 3 + (uint32_t)rng_below(r, max - 3 + 1);
    rand_alnum(r, out, len);
    return len;
}

/* next_extra: a string making the record's size avg on average (± 20 %). */
static uint32_t next_extra(rng *r, char *out, uint64_t current, uint64_t avg)
{
    if (current > avg)
        return 0;
    uint64_t want = avg - current, delta = (uint64_t)llround((double)want * 0.2);
    if (!delta)
        return 0;
    uint64_t len = want - delta + rng_below(r, 2 * delta + 1);
    if (len > NX_EXTRA_MAX)
        len = NX_EXTRA_MAX;
    rand_alnum(r, out, (uint32_t)len);
    return (uint32_t)len;
}

static uint64_t last_person(uint64_t e)
{
    uint64_t epoch = e / NX_TOTAL_PROP, off = e % NX_TOTAL_PROP;
    if (off >= NX_PERSON_PROP)
        off = NX_PERSON_PROP - 1;
    return epoch * NX_PERSON_PROP + off;
}

static uint64_t next_person(rng *r, uint64_t e)
{
    uint64_t people = last_person(e) + 1;
    uint64_t active = people < NX_ACTIVE_PEOPLE ? people : NX_ACTIVE_PEOPLE;
    return people - active + rng_below(r, active + NX_PERSON_ID_LEAD);
}

static uint64_t last_auction(uint64_t e)
{
    uint64_t epoch = e / NX_TOTAL_PROP, off = e % NX_TOTAL_PROP;
    if (off < NX_PERSON_PROP) {
        if (epoch == 0)
            return 0;
        epoch--;
        off = NX_AUCTION_PROP - 1;
    } else if (off >= NX_PERSON_PROP + NX_AUCTION_PROP) {
        off = NX_AUCTION_PROP - 1;
    } else {
        off -= NX_PERSON_PROP;
    }
    return epoch * NX_AUCTION_PROP + off;
}

static uint64_t next_auction(rng *r, uint64_t e)
{
    uint64_t hi = last_auction(e), lo = hi > NX_IN_FLIGHT_AUCTIONS ? hi - NX_IN_FLIGHT_AUCTIONS : 0;
    return lo + rng_below(r, hi - lo + 1);
}

static int64_t next_price(rng *r) { return (int64_t)ceil(pow(10.0, rng_unit(r) * 6.0) * 100.0); }

static uint32_t reverse_bits32(uint32_t x)
{
    uint32_t y = 0;
    for (int i = 0; i < 32; i++, x >>= 1)
        y = (y << 1) | (x & 1);
    return y;
}

/* A cold channel: its name and URL, the same for every run (seeded by its number). */
static void nx_channel(nx_gen *g, uint32_t c, nx_event *ev)
{
    if (!g->chan_name[c]) {
        rng cr;
        rng_seed(&cr, c);
        char path[8];
        uint32_t pl = next_string(&cr, path, 5);
        buf u = BUF_INIT, n = BUF_INIT;
        buf_printf(&u, "https://www.nexmark.com/%.*s/item.htm?query=1", (int)pl, path);
        if (rng_below(&cr, 10) != 9)
            buf_printf(&u, "&channel_id=%u", reverse_bits32(c));
        buf_printf(&n, "channel-%u", c);
        g->chan_name[c] = n.data;
        g->chan_url[c] = u.data;
    }
    ev->channel = g->chan_name[c];
    ev->url = g->chan_url[c];
}

static void nx_next(nx_gen *g, nx_event *ev)
{
    rng *r = &g->r;
    uint64_t e = g->n++;
    ev->number = e;
    ev->ts_us = nx_time_us(g, e);
    uint64_t rem = e % NX_TOTAL_PROP;
    if (rem < NX_PERSON_PROP) {
        ev->kind = NX_PERSON;
        ev->id = (int64_t)(last_person(e) + NX_FIRST_PERSON_ID);
        const char *fn = first_names[rng_below(r, NELEM(first_names))], *ln = last_names[rng_below(r, NELEM(last_names))];
        ev->name_len = (uint32_t)snprintf(ev->name, sizeof ev->name, "%s %s", fn, ln);
        char a[8], b[8];
        uint32_t al = next_string(r, a, 7), bl = next_string(r, b, 5);
        ev->email_len = (uint32_t)snprintf(ev->email, sizeof ev->email, "%.*s@%.*s.com", (int)al, a, (int)bl, b);
        unsigned c1 = (unsigned)rng_below(r, 10000), c2 = (unsigned)rng_below(r, 10000),
                 c3 = (unsigned)rng_below(r, 10000), c4 = (unsigned)rng_below(r, 10000);
        ev->card_len = (uint32_t)snprintf(ev->card, sizeof ev->card, "%04u %04u %04u %04u", c1, c2, c3, c4);
        ev->city = us_cities[rng_below(r, NELEM(us_cities))];
        ev->state = us_states[rng_below(r, NELEM(us_states))];
        uint64_t size = 8 + ev->name_len + ev->email_len + ev->card_len + strlen(ev->city) + strlen(ev->state);
        ev->extra_len = next_extra(r, ev->extra, size, NX_AVG_PERSON_BYTES);
    } else if (rem < NX_PERSON_PROP + NX_AUCTION_PROP) {
        ev->kind = NX_AUCTION;
        ev->id = (int64_t)(last_auction(e) + NX_FIRST_AUCTION_ID);
        uint64_t seller = rng_below(r, NX_HOT_SELLERS_RATIO) == 0 ? next_person(r, e)
                                                                   : last_person(e) / NX_HOT_GROUP * NX_HOT_GROUP;
        ev->seller = (int64_t)(seller + NX_FIRST_PERSON_ID);
        ev->category = NX_FIRST_CATEGORY_ID + (int64_t)rng_below(r, NX_CATEGORIES);
        ev->initial_bid = next_price(r);
        /* The auction lasts about as long as it takes to create NX_IN_FLIGHT_AUCTIONS more. */
        uint64_t ahead = (uint64_t)NX_IN_FLIGHT_AUCTIONS * NX_TOTAL_PROP / NX_AUCTION_PROP;
        int64_t horizon = nx_time_us(g, e + ahead) - ev->ts_us;
        ev->expires_us = ev->ts_us + 1 + (int64_t)rng_below(r, horizon * 2 > 1 ? (uint64_t)horizon * 2 : 1);
        ev->item_len = next_string(r, ev->item, 20);
        ev->desc_len = next_string(r, ev->desc, 100);
        ev->reserve = ev->initial_bid + next_price(r);
        uint64_t size = 8 + ev->item_len + ev->desc_len + 8 * 3 + 8 * 2;
        ev->extra_len = next_extra(r, ev->extra, size, NX_AVG_AUCTION_BYTES);
    } else {
        ev->kind = NX_BID;
        uint64_t a = rng_below(r, NX_HOT_AUCTION_RATIO) == 0 ? next_auction(r, e)
                                                              : last_auction(e) / NX_HOT_GROUP * NX_HOT_GROUP;
        ev->auction = (int64_t)(a + NX_FIRST_AUCTION_ID);
        uint64_t b = rng_below(r, NX_HOT_BIDDERS_RATIO) == 0 ? next_person(r, e)
                                                              : last_person(e) / NX_HOT_GROUP * NX_HOT_GROUP + 1;
        ev->bidder = (int64_t)(b + NX_FIRST_PERSON_ID);
        ev->price = next_price(r);
        uint32_t c = (uint32_t)rng_below(r, NX_CHANNELS);
        if (1 + rng_below(r, NX_HOT_CHANNELS_RATIO) == NX_HOT_CHANNELS_RATIO) {
            nx_channel(g, c, ev);
        } else {
            uint64_t h = rng_below(r, NELEM(hot_channels));
            ev->channel = hot_channels[h];
            ev->url = hot_urls[h];
        }
        ev->channel_len = (uint32_t)strlen(ev->channel);
        ev->url_len = (uint32_t)strlen(ev->url);
        ev->extra_len = next_extra(r, ev->extra, 8 * 4, NX_AVG_BID_BYTES);
    }
}

/* ------------------------------------------------------------ typed records */

typedef struct nx_type {
    const char *name;
    const char *const *fields;
    const expr_type *types;
    uint32_t nfields;
    ev_schema *s;              /* the spec's (registered: s->id set) */
    int idx[10];               /* our field k -> schema field */
    expr_value *slots;         /* s->nfields, NULL where we give nothing */
} nx_type;

static const char *const person_fields[] = {"id", "name", "email_address", "credit_card", "city", "state",
                                            "date_time", "extra"};
static const expr_type person_types[] = {EXPR_BIGINT, EXPR_TEXT, EXPR_TEXT, EXPR_TEXT,
                                         EXPR_TEXT,   EXPR_TEXT, EXPR_TIMESTAMPTZ, EXPR_TEXT};
static const char *const auction_fields[] = {"id",        "item_name", "description", "initial_bid", "reserve",
                                             "date_time", "expires",   "seller",      "category",    "extra"};
static const expr_type auction_types[] = {EXPR_BIGINT,      EXPR_TEXT,        EXPR_TEXT,   EXPR_BIGINT, EXPR_BIGINT,
                                          EXPR_TIMESTAMPTZ, EXPR_TIMESTAMPTZ, EXPR_BIGINT, EXPR_BIGINT, EXPR_TEXT};
static const char *const bid_fields[] = {"auction", "bidder", "price", "channel", "url", "date_time", "extra"};
static const expr_type bid_types[] = {EXPR_BIGINT, EXPR_BIGINT, EXPR_BIGINT, EXPR_TEXT,
                                      EXPR_TEXT,   EXPR_TIMESTAMPTZ, EXPR_TEXT};

typedef struct nx_types {
    nx_type t[3];              /* by nx_kind */
} nx_types;

static int nx_types_init(nx_types *ts, const payi_spec *spec)
{
    nx_type init[3] = {{"Person", person_fields, person_types, NELEM(person_fields), NULL, {0}, NULL},
                       {"Auction", auction_fields, auction_types, NELEM(auction_fields), NULL, {0}, NULL},
                       {"Bid", bid_fields, bid_types, NELEM(bid_fields), NULL, {0}, NULL}};
    memcpy(ts->t, init, sizeof init);
    for (int k = 0; k < 3; k++) {
        nx_type *t = &ts->t[k];
        int e = spec_find_event(spec, t->name, strlen(t->name));
        if (e < 0) {
            fprintf(stderr, "payi bench views: the spec declares no event %s\n", t->name);
            return -1;
        }
        t->s = spec->events[e];
        t->slots = xcalloc(t->s->nfields + 1, sizeof *t->slots);
        for (uint32_t i = 0; i < t->s->nfields; i++)
            t->slots[i] = expr_null(t->s->fields[i].type);
        for (uint32_t f = 0; f < t->nfields; f++) {
            int i = schema_field_index(t->s, t->fields[f], strlen(t->fields[f]));
            if (i < 0 || t->s->fields[i].type != t->types[f]) {
                fprintf(stderr, "payi bench views: event %s needs a field %s of type %s\n", t->name, t->fields[f],
                        expr_type_name(t->types[f]));
                return -1;
            }
            t->idx[f] = i;
        }
    }
    return 0;
}

static void nx_types_release(nx_types *ts)
{
    for (int k = 0; k < 3; k++)
        free(ts->t[k].slots);
}

static void put(nx_type *t, uint32_t f, expr_value v) { t->slots[t->idx[f]] = v; }

/* The typed record of ev, appended to out. */
static void nx_encode(nx_types *ts, const nx_event *ev, buf *out)
{
    nx_type *t = &ts->t[ev->kind];
    switch (ev->kind) {
    case NX_PERSON:
        put(t, 0, expr_int(ev->id));
        put(t, 1, expr_text(ev->name, ev->name_len));
        put(t, 2, expr_text(ev->email, ev->email_len));
        put(t, 3, expr_text(ev->card, ev->card_len));
        put(t, 4, expr_text(ev->city, strlen(ev->city)));
        put(t, 5, expr_text(ev->state, strlen(ev->state)));
        put(t, 6, expr_ts(ev->ts_us));
        put(t, 7, expr_text(ev->extra, ev->extra_len));
        break;
    case NX_AUCTION:
        put(t, 0, expr_int(ev->id));
        put(t, 1, expr_text(ev->item, ev->item_len));
        put(t, 2, expr_text(ev->desc, ev->desc_len));
        put(t, 3, expr_int(ev->initial_bid));
        put(t, 4, expr_int(ev->reserve));
        put(t, 5, expr_ts(ev->ts_us));
        put(t, 6, expr_ts(ev->expires_us));
        put(t, 7, expr_int(ev->seller));
        put(t, 8, expr_int(ev->category));
        put(t, 9, expr_text(ev->extra, ev->extra_len));
        break;
    case NX_BID:
        put(t, 0, expr_int(ev->auction));
        put(t, 1, expr_int(ev->bidder));
        put(t, 2, expr_int(ev->price));
        put(t, 3, expr_text(ev->channel, ev->channel_len));
        put(t, 4, expr_text(ev->url, ev->url_len));
        put(t, 5, expr_ts(ev->ts_us));
        put(t, 6, expr_text(ev->extra, ev->extra_len));
        break;
    }
    schema_encode(t->s, t->slots, out);
}

/* ------------------------------------------------------------ filling the log */

/* What the generator wrote, for the checks and the peers. */
typedef struct nx_bid {
    uint64_t number;           /* event number */
    int64_t auction, price, ts_us;
} nx_bid;

typedef struct nx_totals {
    uint64_t events, persons, auctions;
    uint64_t q2_bids;          /* auction % 123 = 0 */
    int64_t price_sum;
    uint64_t bytes;            /* typed data bytes */
    nx_bid *bids;              /* every bid, in order */
    size_t nbids;
} nx_totals;

enum { FILL_BATCH = 10000 };

typedef struct fill_slot {
    log_append *apps;
    log_event_in *evs;
    uint8_t *kind;
    uint32_t *data_off, *name_off, *name_len;
    buf data, names;
    log_submission *sub;
} fill_slot;

static void add_total(nx_totals *tot, size_t *cap, const nx_event *ev)
{
    tot->events++;
    if (ev->kind == NX_PERSON) {
        tot->persons++;
        return;
    }
    if (ev->kind == NX_AUCTION) {
        tot->auctions++;
        return;
    }
    tot->bids = xgrow(tot->bids, cap, tot->nbids + 1, sizeof *tot->bids);
    tot->bids[tot->nbids++] = (nx_bid){ev->number, ev->auction, ev->price, ev->ts_us};
    tot->q2_bids += ev->auction % 123 == 0;
    tot->price_sum += ev->price;
}

/* Generate n events and append them (one event per append, FILL_BATCH
 * appends per submission, two submissions in flight). */
static int fill_log(payi_log *log, nx_types *ts, uint64_t seed, uint64_t rate, uint64_t n, nx_totals *tot)
{
    nx_gen *g = xmalloc(sizeof *g);
    nx_init(g, seed, rate);
    fill_slot fsl[2];
    memset(fsl, 0, sizeof fsl);
    for (int k = 0; k < 2; k++) {
        fsl[k].apps = xmalloc(FILL_BATCH * sizeof *fsl[k].apps);
        fsl[k].evs = xmalloc(FILL_BATCH * sizeof *fsl[k].evs);
        fsl[k].kind = xmalloc(FILL_BATCH);
        fsl[k].data_off = xmalloc((FILL_BATCH + 1) * sizeof(uint32_t));
        fsl[k].name_off = xmalloc(FILL_BATCH * sizeof(uint32_t));
        fsl[k].name_len = xmalloc(FILL_BATCH * sizeof(uint32_t));
    }
    memset(tot, 0, sizeof *tot);
    size_t cap = 0;
    nx_event ev;
    int failed = 0, k = 0;
    bool tty = isatty(STDERR_FILENO);
    for (uint64_t done = 0; done < n && !failed; k ^= 1) {
        fill_slot *fs = &fsl[k];
        if (fs->sub && log_wait(log, fs->sub) != PAYI_OK)
            failed = 1;
        fs->sub = NULL;
        buf_reset(&fs->data);
        buf_reset(&fs->names);
        uint32_t m = (uint32_t)(n - done < FILL_BATCH ? n - done : FILL_BATCH);
        for (uint32_t i = 0; i < m; i++) {
            nx_next(g, &ev);
            fs->kind[i] = (uint8_t)ev.kind;
            fs->data_off[i] = (uint32_t)fs->data.len;
            nx_encode(ts, &ev, &fs->data);
            fs->name_off[i] = (uint32_t)fs->names.len;
            buf_printf(&fs->names, "%s-%" PRId64, ev.kind == NX_PERSON ? "person" : "auction",
                       ev.kind == NX_BID ? ev.auction : ev.id);
            fs->name_len[i] = (uint32_t)(fs->names.len - fs->name_off[i]);
            add_total(tot, &cap, &ev);
        }
        fs->data_off[m] = (uint32_t)fs->data.len;
        tot->bytes += fs->data.len;
        for (uint32_t i = 0; i < m; i++) {
            const char *type = ts->t[fs->kind[i]].name;
            fs->evs[i] = (log_event_in){.type = type, .type_len = (uint32_t)strlen(type),
                                        .data = fs->data.data + fs->data_off[i],
                                        .data_len = fs->data_off[i + 1] - fs->data_off[i],
                                        .encoding = LOG_ENC_TYPED};
            fs->apps[i] = (log_append){.stream = fs->names.data + fs->name_off[i], .stream_len = fs->name_len[i],
                                       .expected = LOG_EXPECT_ANY, .events = &fs->evs[i], .nevents = 1};
        }
        fs->sub = log_submit(log, fs->apps, m, false);
        done += m;
        if (tty && (done % 500000 == 0 || done == n))
            fprintf(stderr, "\rpayi bench views: generating %" PRIu64 " / %" PRIu64, done, n);
    }
    if (tty)
        fputc('\n', stderr);
    for (int j = 0; j < 2; j++) {
        if (fsl[j].sub && log_wait(log, fsl[j].sub) != PAYI_OK)
            failed = 1;
        free(fsl[j].apps);
        free(fsl[j].evs);
        free(fsl[j].kind);
        free(fsl[j].data_off);
        free(fsl[j].name_off);
        free(fsl[j].name_len);
        buf_release(&fsl[j].data);
        buf_release(&fsl[j].names);
    }
    nx_release(g);
    free(g);
    if (failed)
        fprintf(stderr, "payi bench views: an append failed while generating\n");
    return failed ? -1 : 0;
}

/* ------------------------------------------------------------ CPU time */

static double tv_s(struct timeval t) { return (double)t.tv_sec + (double)t.tv_usec / 1e6; }

typedef struct cpu_self {
    double user, sys;
} cpu_self;

static cpu_self self_cpu(int who)
{
    struct rusage ru;
    getrusage(who, &ru);
    return (cpu_self){tv_s(ru.ru_utime), tv_s(ru.ru_stime)};
}

typedef struct tidset {
    pid_t *t;
    size_t n, cap;
} tidset;

static int cmp_pid(const void *a, const void *b)
{
    pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
    return x < y ? -1 : x > y;
}

/* The threads of this process, ascending. */
static void list_tids(tidset *s)
{
    s->n = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        s->t = xgrow(s->t, &s->cap, s->n + 1, sizeof *s->t);
        s->t[s->n++] = (pid_t)atoi(de->d_name);
    }
    closedir(d);
    qsort(s->t, s->n, sizeof *s->t, cmp_pid);
}

static bool tid_in(const tidset *s, pid_t t) { return bsearch(&t, s->t, s->n, sizeof *s->t, cmp_pid) != NULL; }

/* CPU seconds of a thread of this process (its thread CPU clock, as
 * pthread_getcpuclockid would give: MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)). */
static double thread_cpu_s(pid_t tid)
{
    clockid_t c = (clockid_t)((~(uint32_t)tid << 3) | 6u);
    struct timespec ts;
    if (clock_gettime(c, &ts) != 0)
        return -1;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* utime + stime of a process, in clock ticks; false when it is gone. */
static bool proc_ticks(int pid, uint64_t *out)
{
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    char *p = strrchr(line, ')');
    unsigned long ut, st;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return false;
    *out = (uint64_t)ut + st;
    return true;
}

/* The CPU ticks of every process of a PostgreSQL server (those in
 * pg_stat_activity: backends and background workers), read from /proc: the
 * server must run on this machine. */
typedef struct pgcpu {
    int *pid;
    uint64_t *ticks;
    size_t n;
    bool ok;
} pgcpu;

static void pgcpu_sample(const char *url, pgcpu *s)
{
    memset(s, 0, sizeof *s);
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid()");
        if (PQresultStatus(r) == PGRES_TUPLES_OK) {
            int rows = PQntuples(r);
            s->pid = xcalloc((size_t)rows + 1, sizeof *s->pid);
            s->ticks = xcalloc((size_t)rows + 1, sizeof *s->ticks);
            for (int i = 0; i < rows; i++)
                if (proc_ticks(atoi(PQgetvalue(r, i, 0)), &s->ticks[s->n]))
                    s->pid[s->n++] = atoi(PQgetvalue(r, i, 0));
            s->ok = s->n > 0;
        }
        PQclear(r);
    }
    PQfinish(c);
}

static double pgcpu_delta_s(const pgcpu *a, const pgcpu *b)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < b->n; i++) {
        uint64_t before = 0;
        for (size_t j = 0; j < a->n; j++)
            if (a->pid[j] == b->pid[i])
                before = a->ticks[j];
        sum += b->ticks[i] > before ? b->ticks[i] - before : 0;
    }
    return (double)sum / (double)sysconf(_SC_CLK_TCK);
}

static void pgcpu_release(pgcpu *s)
{
    free(s->pid);
    free(s->ticks);
    memset(s, 0, sizeof *s);
}

static bool is_pg_url(const char *url)
{
    return strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0;
}

/* ------------------------------------------------------------ runs */

typedef struct run_spec {
    char *views;               /* "all" or "q0,q17" */
    char *url;
} run_spec;

typedef struct view_res {
    const char *name;
    pid_t tid;                 /* 0: not known */
    double done_s;             /* open -> position at the head */
    double cpu_s;              /* its thread's CPU; < 0: not known */
    view_status st;
    int64_t rows;              /* rows in its table afterwards; -1: not read */
} view_res;

typedef struct check_res {
    char what[128];
    double expected, got;
    bool ok, read;
} check_res;

typedef struct run_res {
    const run_spec *rs;
    bool pg;
    uint32_t nviews;
    view_res *v;
    uint64_t head;
    double wall_s;
    cpu_self cpu;              /* the whole process */
    double server_cpu_s;       /* PostgreSQL, when known; else -1 */
    check_res checks[16];
    uint32_t nchecks;
    bool threads_mapped;       /* the new threads were exactly one per view */
    int status;                /* 0 ok */
    char error[700];
} run_res;

/* The number in the first cell of view_engine_sql's answer. */
static bool sql_number(view_engine *ve, const char *sql, double *out, char *err, size_t errsz)
{
    buf b = BUF_INIT;
    payi_err e;
    bool ok = false;
    if (view_engine_sql(ve, sql, 1, &b, &e) != PAYI_OK) {
        snprintf(err, errsz, "%s: %s", sql, e.msg);
    } else {
        const char *p = b.data ? strstr(b.data, "\"rows\":[[") : NULL;
        char *end;
        if (p) {
            *out = strtod(p + 9, &end);
            ok = end != p + 9;
        }
        if (!ok)
            snprintf(err, errsz, "%s: no number in %.200s", sql, b.data ? b.data : "");
    }
    buf_release(&b);
    return ok;
}

static void add_check(run_res *r, view_engine *ve, const char *sql, double expected)
{
    if (r->nchecks == NELEM(r->checks))
        return;
    check_res *c = &r->checks[r->nchecks++];
    snprintf(c->what, sizeof c->what, "%s", sql);
    c->expected = expected;
    char err[700];
    c->read = sql_number(ve, sql, &c->got, err, sizeof err);
    c->ok = c->read && c->got == expected;
    if (!c->ok && r->status == 0) {
        r->status = 1;
        if (c->read)
            snprintf(r->error, sizeof r->error, "check failed: %s gave %.0f, expected %.0f", sql, c->got, expected);
        else
            snprintf(r->error, sizeof r->error, "check failed: %.600s", err);
    }
}

/* The rows the generator's totals say each view must have. */
static void run_checks(run_res *r, view_engine *ve, const nx_totals *tot)
{
    char sql[160];
    for (uint32_t i = 0; i < r->nviews; i++) {
        const char *n = r->v[i].name;
        snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\"", n);
        double rows;
        char err[700];
        r->v[i].rows = sql_number(ve, sql, &rows, err, sizeof err) ? (int64_t)rows : -1;
        double bids = (double)tot->nbids;
        if (!strcmp(n, "q0") || !strcmp(n, "q1"))
            add_check(r, ve, sql, bids);
        else if (!strcmp(n, "q2"))
            add_check(r, ve, sql, (double)tot->q2_bids);
        else if (!strcmp(n, "q12"))
            add_check(r, ve, "SELECT sum(bid_count) FROM q12", bids);
        else if (!strcmp(n, "q15") || !strcmp(n, "q16") || !strcmp(n, "q17")) {
            snprintf(sql, sizeof sql, "SELECT sum(total_bids) FROM %s", n);
            add_check(r, ve, sql, bids);
        }
        if (!strcmp(n, "q17"))
            add_check(r, ve, "SELECT sum(sum_price) FROM q17", (double)tot->price_sum);
    }
}

/* spec with only the views named in list ("all": every view); the views
 * array is the caller's to free. */
static int select_views(const payi_spec *spec, const char *list, payi_spec *out)
{
    *out = *spec;
    out->views = xcalloc(spec->nviews + 1, sizeof *out->views);
    out->nviews = 0;
    if (!strcmp(list, "all")) {
        memcpy(out->views, spec->views, spec->nviews * sizeof *spec->views);
        out->nviews = spec->nviews;
        return 0;
    }
    const char *p = list;
    while (*p) {
        size_t len = strcspn(p, ",");
        uint32_t i;
        for (i = 0; i < spec->nviews; i++)
            if (strlen(spec->views[i].name) == len && !memcmp(spec->views[i].name, p, len))
                break;
        if (i == spec->nviews) {
            fprintf(stderr, "payi bench views: the spec has no view %.*s\n", (int)len, p);
            free(out->views);
            return -1;
        }
        out->views[out->nviews++] = spec->views[i];
        p += len + (p[len] == ',');
    }
    return 0;
}

/* The store must hold none of these views yet: a run measures folding from
 * position 0. */
static int check_fresh(const char *url, const payi_spec *sub, char *err, size_t errsz)
{
    store *st;
    payi_err e;
    if (store_open(&st, url, STORE_RW, &e) != PAYI_OK) {
        snprintf(err, errsz, "%s", e.msg);
        return -1;
    }
    int rc = 0;
    for (uint32_t i = 0; rc == 0 && i < sub->nviews; i++) {
        store_meta m;
        if (store_get_meta(st, sub->views[i].name, &m, &e) != PAYI_OK) {
            snprintf(err, errsz, "%s", e.msg);
            rc = -1;
        } else if (m.found) {
            snprintf(err, errsz,
                     "the store already holds view %s (at position %" PRIu64 "): give each run a fresh SQLite "
                     "file or PostgreSQL database",
                     sub->views[i].name, m.position);
            rc = -1;
        }
    }
    store_close(st);
    return rc;
}

static void run_views(payi_log *log, registry *reg, const payi_spec *spec, const nx_totals *tot,
                      const run_spec *rs, double timeout_s, run_res *r)
{
    memset(r, 0, sizeof *r);
    r->rs = rs;
    r->pg = is_pg_url(rs->url);
    r->server_cpu_s = -1;
    payi_spec sub;
    if (select_views(spec, rs->views, &sub) != 0) {
        r->status = 1;
        snprintf(r->error, sizeof r->error, "unknown view in %s", rs->views);
        return;
    }
    r->nviews = sub.nviews;
    r->v = xcalloc(sub.nviews + 1, sizeof *r->v);
    for (uint32_t i = 0; i < sub.nviews; i++) {
        r->v[i].name = sub.views[i].name;
        r->v[i].cpu_s = -1;
        r->v[i].rows = -1;
    }
    bool dry = strcmp(rs->url, "dry:") == 0;   /* fold only: view_options.dry_run, no store */
    if (!dry && check_fresh(rs->url, &sub, r->error, sizeof r->error) != 0) {
        r->status = 1;
        free(sub.views);
        return;
    }
    tidset before = {0}, after = {0};
    list_tids(&before);
    pgcpu pg0 = {0}, pg1 = {0};
    if (r->pg)
        pgcpu_sample(rs->url, &pg0);
    view_options o;
    view_options_default(&o);
    o.store_url = dry ? NULL : rs->url;
    o.dry_run = dry;
    o.live = true;
    cpu_self c0 = self_cpu(RUSAGE_SELF);
    int64_t t0 = time_mono_ns();
    view_engine *ve;
    payi_err err;
    if (view_engine_open(&ve, log, reg, &sub, &o, &err) != PAYI_OK) {
        r->status = 1;
        snprintf(r->error, sizeof r->error, "%s", err.msg);
        free(sub.views);
        pgcpu_release(&pg0);
        free(before.t);
        return;
    }
    list_tids(&after);
    pid_t *fresh = xcalloc(after.n + 1, sizeof *fresh);
    size_t nfresh = 0;
    for (size_t i = 0; i < after.n; i++)
        if (!tid_in(&before, after.t[i]))
            fresh[nfresh++] = after.t[i];
    /* view_engine_open starts one thread per view, in order; thread ids
     * are handed out in increasing order. */
    r->threads_mapped = nfresh == sub.nviews;
    for (uint32_t i = 0; r->threads_mapped && i < sub.nviews; i++)
        r->v[i].tid = fresh[i];
    r->head = log_head(log);
    uint32_t left = sub.nviews;
    bool *done = xcalloc(sub.nviews + 1, sizeof *done);
    while (left) {
        int64_t now = time_mono_ns();
        for (uint32_t i = 0; i < sub.nviews; i++) {
            if (done[i])
                continue;
            view_engine_status(ve, i, &r->v[i].st);
            if (r->v[i].st.position >= r->head) {
                done[i] = true;
                r->v[i].done_s = (double)(now - t0) / 1e9;
                left--;
            }
        }
        if (left && (double)(now - t0) / 1e9 > timeout_s) {
            r->status = 1;
            int n = snprintf(r->error, sizeof r->error, "not at the head after %.0f s:", timeout_s);
            for (uint32_t i = 0; i < sub.nviews && n > 0 && (size_t)n < sizeof r->error; i++)
                if (!done[i])
                    n += snprintf(r->error + n, sizeof r->error - (size_t)n, " %s at %" PRIu64 "%s%s;", r->v[i].name,
                                  r->v[i].st.position, r->v[i].st.last_error[0] ? ": " : "", r->v[i].st.last_error);
            break;
        }
        if (left) {
            struct timespec ts = {0, 2000000};
            nanosleep(&ts, NULL);
        }
    }
    int64_t t1 = time_mono_ns();
    cpu_self c1 = self_cpu(RUSAGE_SELF);
    for (uint32_t i = 0; i < sub.nviews; i++) {
        if (r->v[i].tid)
            r->v[i].cpu_s = thread_cpu_s(r->v[i].tid);
        view_engine_status(ve, i, &r->v[i].st);
    }
    if (r->pg) {
        pgcpu_sample(rs->url, &pg1);
        if (pg0.ok && pg1.ok)
            r->server_cpu_s = pgcpu_delta_s(&pg0, &pg1);
    }
    r->wall_s = (double)(t1 - t0) / 1e9;
    r->cpu = (cpu_self){c1.user - c0.user, c1.sys - c0.sys};
    if (r->status == 0)
        if (!dry)   /* a dry run writes no rows to check */
            run_checks(r, ve, tot);
    view_engine_close(ve);
    free(done);
    free(fresh);
    free(before.t);
    free(after.t);
    pgcpu_release(&pg0);
    pgcpu_release(&pg1);
    free(sub.views);
}

/* ------------------------------------------------------------ peers: the usual upsert way */

typedef struct peer_res {
    const char *url;
    bool pg, pipeline;
    uint64_t events, bids, txns;
    double wall_s, client_cpu_s, server_cpu_s;
    int64_t rows, total_bids;
    int status;
    char error[700];
} peer_res;

enum { PEER_TXN = 1000 };

static void day_text(int64_t ts_us, char out[16])
{
    int64_t day = ts_us / 86400000000LL - (ts_us % 86400000000LL < 0);
    int64_t y;
    unsigned m, d;
    expr_civil_from_days(day, &y, &m, &d);
    snprintf(out, 16, "%04lld-%02u-%02u", (long long)y, m, d);
}

static const char peer_sqlite_ddl[] =
    "CREATE TABLE q17_peer (auction INTEGER NOT NULL, day TEXT NOT NULL, total_bids INTEGER NOT NULL, "
    "rank1_bids INTEGER NOT NULL, rank2_bids INTEGER NOT NULL, rank3_bids INTEGER NOT NULL, "
    "min_price INTEGER, max_price INTEGER, sum_price INTEGER NOT NULL, PRIMARY KEY (auction, day)) STRICT";
static const char peer_sqlite_upsert[] =
    "INSERT INTO q17_peer VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?6, ?6) ON CONFLICT (auction, day) DO UPDATE SET "
    "total_bids = total_bids + 1, rank1_bids = rank1_bids + excluded.rank1_bids, "
    "rank2_bids = rank2_bids + excluded.rank2_bids, rank3_bids = rank3_bids + excluded.rank3_bids, "
    "min_price = min(min_price, excluded.min_price), max_price = max(max_price, excluded.max_price), "
    "sum_price = sum_price + excluded.sum_price";
static const char peer_pg_ddl[] =
    "CREATE TABLE q17_peer (auction bigint NOT NULL, day date NOT NULL, total_bids bigint NOT NULL, "
    "rank1_bids bigint NOT NULL, rank2_bids bigint NOT NULL, rank3_bids bigint NOT NULL, "
    "min_price bigint, max_price bigint, sum_price bigint NOT NULL, PRIMARY KEY (auction, day))";
static const char peer_pg_upsert[] =
    "INSERT INTO q17_peer AS t VALUES ($1, $2, 1, $3, $4, $5, $6, $6, $6) ON CONFLICT (auction, day) DO UPDATE SET "
    "total_bids = t.total_bids + 1, rank1_bids = t.rank1_bids + EXCLUDED.rank1_bids, "
    "rank2_bids = t.rank2_bids + EXCLUDED.rank2_bids, rank3_bids = t.rank3_bids + EXCLUDED.rank3_bids, "
    "min_price = LEAST(t.min_price, EXCLUDED.min_price), max_price = GREATEST(t.max_price, EXCLUDED.max_price), "
    "sum_price = t.sum_price + EXCLUDED.sum_price";

static int rank_of(int64_t price) { return price < 10000 ? 1 : price < 1000000 ? 2 : 3; }

static int sq_exec(sqlite3 *db, const char *sql, peer_res *r)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK)
        return 0;
    snprintf(r->error, sizeof r->error, "SQLite: %s: %s", sql, msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    r->status = 1;
    return -1;
}

static void peer_sqlite(const char *path, const nx_totals *tot, double max_s, peer_res *r)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        snprintf(r->error, sizeof r->error, "SQLite: cannot open %s: %s", path, sqlite3_errmsg(db));
        r->status = 1;
        sqlite3_close(db);
        return;
    }
    if (sq_exec(db, "PRAGMA journal_mode=WAL", r) || sq_exec(db, "PRAGMA synchronous=FULL", r) ||
        sq_exec(db, "DROP TABLE IF EXISTS q17_peer", r) || sq_exec(db, peer_sqlite_ddl, r))
        goto out;
    if (sqlite3_prepare_v2(db, peer_sqlite_upsert, -1, &st, NULL) != SQLITE_OK) {
        snprintf(r->error, sizeof r->error, "SQLite: prepare: %s", sqlite3_errmsg(db));
        r->status = 1;
        goto out;
    }
    cpu_self c0 = self_cpu(RUSAGE_THREAD);
    int64_t t0 = time_mono_ns(), deadline = t0 + (int64_t)(max_s * 1e9);
    size_t i = 0;
    while (i < tot->nbids && time_mono_ns() < deadline && r->status == 0) {
        if (sq_exec(db, "BEGIN", r))
            break;
        for (size_t end = i + PEER_TXN < tot->nbids ? i + PEER_TXN : tot->nbids; i < end; i++) {
            const nx_bid *b = &tot->bids[i];
            char day[16];
            day_text(b->ts_us, day);
            int rk = rank_of(b->price);
            sqlite3_bind_int64(st, 1, b->auction);
            sqlite3_bind_text(st, 2, day, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int(st, 3, rk == 1);
            sqlite3_bind_int(st, 4, rk == 2);
            sqlite3_bind_int(st, 5, rk == 3);
            sqlite3_bind_int64(st, 6, b->price);
            if (sqlite3_step(st) != SQLITE_DONE) {
                snprintf(r->error, sizeof r->error, "SQLite: upsert: %s", sqlite3_errmsg(db));
                r->status = 1;
                break;
            }
            sqlite3_reset(st);
        }
        if (r->status || sq_exec(db, "COMMIT", r))
            break;
        r->txns++;
    }
    r->wall_s = (double)(time_mono_ns() - t0) / 1e9;
    cpu_self c1 = self_cpu(RUSAGE_THREAD);
    r->client_cpu_s = c1.user - c0.user + c1.sys - c0.sys;
    r->server_cpu_s = 0;   /* in process */
    r->bids = i;
    r->events = i ? tot->bids[i - 1].number + 1 : 0;
    sqlite3_finalize(st);
    st = NULL;
    if (r->status == 0 &&
        sqlite3_prepare_v2(db, "SELECT count(*), sum(total_bids) FROM q17_peer", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        r->rows = sqlite3_column_int64(st, 0);
        r->total_bids = sqlite3_column_int64(st, 1);
    }
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static int pg_ok(PGconn *c, PGresult *res, ExecStatusType want, const char *what, peer_res *r)
{
    if (res && PQresultStatus(res) == want) {
        PQclear(res);
        return 0;
    }
    if (r->status == 0) {
        snprintf(r->error, sizeof r->error, "PostgreSQL: %s: %s", what,
                 res ? PQresultErrorMessage(res) : PQerrorMessage(c));
        r->status = 1;
    }
    PQclear(res);
    return -1;
}

/* Read the answers of a pipelined transaction of n statements between
 * BEGIN and COMMIT, then its sync. */
static int pg_read_pipeline(PGconn *c, int n, peer_res *r)
{
    int bad = 0;
    for (int q = 0; q < n + 2; q++) {
        PGresult *res = PQgetResult(c);
        if (!res) {
            bad = 1;
            break;
        }
        if (pg_ok(c, res, PGRES_COMMAND_OK, q == 0 ? "BEGIN" : q == n + 1 ? "COMMIT" : "upsert", r))
            bad = 1;
        while ((res = PQgetResult(c)) != NULL) {   /* the NULL that ends each statement's results */
            if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
                PQclear(res);
                return -1;
            }
            PQclear(res);
        }
    }
    PGresult *res = PQgetResult(c);
    if (!res || PQresultStatus(res) != PGRES_PIPELINE_SYNC)
        bad = 1;
    PQclear(res);
    return bad ? -1 : 0;
}

static void quiet_notice(void *arg, const char *msg)
{
    (void)arg, (void)msg;
}

static void peer_pg(const char *url, bool pipeline, const nx_totals *tot, double max_s, peer_res *r)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK) {
        snprintf(r->error, sizeof r->error, "PostgreSQL: cannot connect: %s", PQerrorMessage(c));
        r->status = 1;
        PQfinish(c);
        return;
    }
    PQsetNoticeProcessor(c, quiet_notice, NULL);   /* "table q17_peer does not exist, skipping" */
    if (pg_ok(c, PQexec(c, "DROP TABLE IF EXISTS q17_peer"), PGRES_COMMAND_OK, "DROP TABLE", r) ||
        pg_ok(c, PQexec(c, peer_pg_ddl), PGRES_COMMAND_OK, "CREATE TABLE", r) ||
        pg_ok(c, PQprepare(c, "up", peer_pg_upsert, 6, NULL), PGRES_COMMAND_OK, "PREPARE", r)) {
        PQfinish(c);
        return;
    }
    pgcpu s0, s1;
    pgcpu_sample(url, &s0);
    if (pipeline && PQenterPipelineMode(c) != 1) {
        snprintf(r->error, sizeof r->error, "PostgreSQL: cannot enter pipeline mode: %s", PQerrorMessage(c));
        r->status = 1;
    }
    cpu_self c0 = self_cpu(RUSAGE_THREAD);
    int64_t t0 = time_mono_ns(), deadline = t0 + (int64_t)(max_s * 1e9);
    size_t i = 0;
    char p_auction[24], p_day[16], p_r1[2], p_r2[2], p_r3[2], p_price[24];
    const char *vals[6] = {p_auction, p_day, p_r1, p_r2, p_r3, p_price};
    while (r->status == 0 && i < tot->nbids && time_mono_ns() < deadline) {
        size_t end = i + PEER_TXN < tot->nbids ? i + PEER_TXN : tot->nbids;
        int n = (int)(end - i);
        if (pipeline) {
            if (PQsendQueryParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0) != 1)
                break;
        } else if (pg_ok(c, PQexec(c, "BEGIN"), PGRES_COMMAND_OK, "BEGIN", r)) {
            break;
        }
        for (; i < end; i++) {
            const nx_bid *b = &tot->bids[i];
            int rk = rank_of(b->price);
            snprintf(p_auction, sizeof p_auction, "%" PRId64, b->auction);
            day_text(b->ts_us, p_day);
            p_r1[0] = rk == 1 ? '1' : '0', p_r1[1] = 0;
            p_r2[0] = rk == 2 ? '1' : '0', p_r2[1] = 0;
            p_r3[0] = rk == 3 ? '1' : '0', p_r3[1] = 0;
            snprintf(p_price, sizeof p_price, "%" PRId64, b->price);
            if (pipeline) {
                if (PQsendQueryPrepared(c, "up", 6, vals, NULL, NULL, 0) != 1) {
                    snprintf(r->error, sizeof r->error, "PostgreSQL: send: %s", PQerrorMessage(c));
                    r->status = 1;
                    break;
                }
            } else if (pg_ok(c, PQexecPrepared(c, "up", 6, vals, NULL, NULL, 0), PGRES_COMMAND_OK, "upsert", r)) {
                break;
            }
        }
        if (r->status)
            break;
        if (pipeline) {
            if (PQsendQueryParams(c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) != 1 || PQpipelineSync(c) != 1 ||
                pg_read_pipeline(c, n, r) != 0) {
                if (r->status == 0) {
                    snprintf(r->error, sizeof r->error, "PostgreSQL: pipeline: %s", PQerrorMessage(c));
                    r->status = 1;
                }
                break;
            }
        } else if (pg_ok(c, PQexec(c, "COMMIT"), PGRES_COMMAND_OK, "COMMIT", r)) {
            break;
        }
        r->txns++;
    }
    r->wall_s = (double)(time_mono_ns() - t0) / 1e9;
    cpu_self c1 = self_cpu(RUSAGE_THREAD);
    r->client_cpu_s = c1.user - c0.user + c1.sys - c0.sys;
    pgcpu_sample(url, &s1);
    r->server_cpu_s = s0.ok && s1.ok ? pgcpu_delta_s(&s0, &s1) : -1;
    pgcpu_release(&s0);
    pgcpu_release(&s1);
    r->bids = i;   /* all committed unless status says otherwise */
    r->events = i ? tot->bids[i - 1].number + 1 : 0;
    if (pipeline)
        PQexitPipelineMode(c);
    if (r->status == 0) {
        PGresult *res = PQexec(c, "SELECT count(*), coalesce(sum(total_bids), 0) FROM q17_peer");
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
            r->rows = atoll(PQgetvalue(res, 0, 0));
            r->total_bids = atoll(PQgetvalue(res, 0, 1));
        }
        PQclear(res);
    }
    PQfinish(c);
}

/* ------------------------------------------------------------ payi bench views */

static const char views_help[] =
    "usage: payi bench views [--events N] [--seed S] [--rate R] [--spec FILE] [--data DIR]\n"
    "                        [--run VIEWS=URL]... [--peer URL]... [--peer-sync URL]...\n"
    "                        [--peer-seconds S] [--timeout S] [--json]\n"
    "\n"
    "View maintenance on the Nexmark benchmark.  Generates N Nexmark events (default 1,000,000:\n"
    "Person, Auction, Bid in Nexmark's proportions 1:3:46, deterministic from --seed, default 42;\n"
    "event time advancing at --rate events/s, Nexmark's default 10,000,000) as typed events into a\n"
    "fresh log in DIR (default: a new directory under $TMPDIR, removed afterwards), then:\n"
    "  --run VIEWS=URL   opens the view engine on that log with the views of the spec (VIEWS: all,\n"
    "                    or a comma list such as q17) and the store URL (sqlite:PATH or\n"
    "                    postgresql://...; it must not hold these views yet; dry: folds and writes\n"
    "                    nothing, view_options.dry_run) and times it until\n"
    "                    every view has folded every event: wall time, CPU of the process, of each\n"
    "                    view's thread and of the PostgreSQL server; then checks the rows.\n"
    "                    Repeatable; default all=sqlite:DIR/views.db.\n"
    "  --peer URL        q17's aggregate maintained the usual way over the same bids: one prepared\n"
    "                    INSERT ... ON CONFLICT DO UPDATE per bid, 1,000 per transaction, into\n"
    "                    sqlite:PATH (WAL, synchronous=FULL) or PostgreSQL (libpq pipeline mode:\n"
    "                    one round trip per transaction).\n"
    "  --peer-sync URL   the same into PostgreSQL waiting for each statement's answer.\n"
    "  --peer-seconds S  each peer stops after S seconds (default 20) or when the bids run out.\n"
    "--spec defaults to bench/specs/nexmark.payi of the repository (../bench/specs from the binary,\n"
    "or $PAYI_REPO/bench/specs).  --timeout bounds each run (default 600 s).  Prints a summary, or\n"
    "one JSON object with --json.  bench/views.sh runs this beside PostgreSQL and writes\n"
    "bench/results/views.md.\n";

/* The repository file rel (e.g. "bench/specs/nexmark.payi"): $PAYI_REPO/rel
 * or ../rel from this binary's directory. */
static void repo_file(const char *rel, char *out, size_t cap)
{
    const char *repo = getenv("PAYI_REPO");
    if (repo && *repo) {
        snprintf(out, cap, "%s/%s", repo, rel);
        return;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        snprintf(out, cap, "%s", rel);
        return;
    }
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    int dir_len = slash ? (int)(slash - self) : 0;
    snprintf(out, cap, "%.*s/../%s", dir_len, self, rel);
}

static int rm_entry(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return unlink(path);
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char sub[PATH_MAX];
        snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
        struct stat st;
        if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode))
            rc |= rm_entry(sub);
        else
            rc |= unlink(sub);
    }
    closedir(d);
    return rc | rmdir(path);
}

static void put_str(buf *b, const char *s) { json_put_string(b, s, strlen(s)); }

static void put_num(buf *b, double x)
{
    if (isfinite(x))
        buf_printf(b, "%.6g", x);
    else
        buf_puts(b, "null");
}

static void put_rate(buf *b, double num, double den)
{
    if (den > 0)
        buf_printf(b, "%.0f", num / den);
    else
        buf_puts(b, "null");
}

typedef struct views_cfg {
    uint64_t events, seed, rate;
    const char *spec_path;
    const char *data;
    run_spec *runs;
    size_t nruns, capruns;
    char **peers;
    bool *peer_sync;
    size_t npeers, cappeers, cappsync;
    double peer_seconds, timeout;
    bool json;
} views_cfg;

static void write_run_json(buf *b, const run_res *r, const nx_totals *tot)
{
    double cpu = r->cpu.user + r->cpu.sys, events = (double)tot->events;
    buf_puts(b, "{\"views\":");
    put_str(b, r->rs->views);
    buf_puts(b, ",\"store\":");
    buf rd = BUF_INIT;
    store_url_redacted(r->rs->url, &rd);
    put_str(b, rd.data ? rd.data : "");
    buf_release(&rd);
    buf_printf(b, ",\"store_kind\":\"%s\",\"ok\":%s,\"error\":", r->pg ? "postgresql" : "sqlite",
               r->status == 0 ? "true" : "false");
    if (r->status)
        put_str(b, r->error);
    else
        buf_puts(b, "null");
    buf_printf(b, ",\"nviews\":%u,\"events\":%" PRIu64 ",\"head\":%" PRIu64 ",\"wall_s\":", r->nviews, tot->events,
               r->head);
    put_num(b, r->wall_s);
    buf_puts(b, ",\"process_cpu_s\":");
    put_num(b, cpu);
    buf_puts(b, ",\"process_user_s\":");
    put_num(b, r->cpu.user);
    buf_puts(b, ",\"process_sys_s\":");
    put_num(b, r->cpu.sys);
    buf_puts(b, ",\"server_cpu_s\":");
    if (r->server_cpu_s >= 0)
        put_num(b, r->server_cpu_s);
    else
        buf_puts(b, r->pg ? "null" : "0");
    buf_puts(b, ",\"events_per_s\":");
    put_rate(b, events, r->wall_s);
    buf_puts(b, ",\"events_per_process_cpu_s\":");
    put_rate(b, events, cpu);
    buf_puts(b, ",\"view_events_per_process_cpu_s\":");
    put_rate(b, events * r->nviews, cpu);
    buf_puts(b, ",\"events_per_cpu_s_with_server\":");
    put_rate(b, events, cpu + (r->server_cpu_s > 0 ? r->server_cpu_s : 0));
    buf_printf(b, ",\"threads_mapped\":%s,\"per_view\":[", r->threads_mapped ? "true" : "false");
    double vcpu = 0;
    for (uint32_t i = 0; i < r->nviews; i++) {
        const view_res *v = &r->v[i];
        if (v->cpu_s > 0)
            vcpu += v->cpu_s;
        buf_printf(b, "%s{\"name\":", i ? "," : "");
        put_str(b, v->name);
        buf_printf(b, ",\"tid\":%d,\"done_s\":", (int)v->tid);
        put_num(b, v->done_s);
        buf_puts(b, ",\"thread_cpu_s\":");
        if (v->cpu_s >= 0)
            put_num(b, v->cpu_s);
        else
            buf_puts(b, "null");
        buf_puts(b, ",\"events_per_thread_cpu_s\":");
        put_rate(b, events, v->cpu_s);
        buf_puts(b, ",\"events_per_s\":");
        put_rate(b, events, v->done_s);
        buf_printf(b,
                   ",\"events_folded\":%" PRIu64 ",\"events_skipped\":%" PRIu64 ",\"batches\":%" PRIu64
                   ",\"rows_written\":%" PRIu64 ",\"rows\":%" PRId64 ",\"failed\":%s,\"last_error\":",
                   v->st.events_folded, v->st.events_skipped, v->st.batches, v->st.rows_written, v->rows,
                   v->st.failed ? "true" : "false");
        put_str(b, v->st.last_error);
        buf_putc(b, '}');
    }
    buf_puts(b, "],\"view_threads_cpu_s\":");
    put_num(b, vcpu);
    buf_puts(b, ",\"view_events_per_view_thread_cpu_s\":");
    put_rate(b, events * r->nviews, vcpu);
    buf_puts(b, ",\"checks\":[");
    for (uint32_t i = 0; i < r->nchecks; i++) {
        const check_res *c = &r->checks[i];
        buf_printf(b, "%s{\"sql\":", i ? "," : "");
        put_str(b, c->what);
        buf_puts(b, ",\"expected\":");
        put_num(b, c->expected);
        buf_puts(b, ",\"got\":");
        if (c->read)
            put_num(b, c->got);
        else
            buf_puts(b, "null");
        buf_printf(b, ",\"ok\":%s}", c->ok ? "true" : "false");
    }
    buf_puts(b, "]}");
}

static void write_peer_json(buf *b, const peer_res *p)
{
    double cpu = p->client_cpu_s + (p->server_cpu_s > 0 ? p->server_cpu_s : 0);
    buf_puts(b, "{\"store\":");
    buf rd = BUF_INIT;
    store_url_redacted(p->url, &rd);
    put_str(b, rd.data ? rd.data : "");
    buf_release(&rd);
    buf_printf(b,
               ",\"store_kind\":\"%s\",\"pipeline\":%s,\"statement\":\"INSERT ... ON CONFLICT (auction, day) DO "
               "UPDATE, one per bid\",\"per_transaction\":%d,\"ok\":%s,\"error\":",
               p->pg ? "postgresql" : "sqlite", p->pipeline ? "true" : "false", PEER_TXN,
               p->status == 0 ? "true" : "false");
    if (p->status)
        put_str(b, p->error);
    else
        buf_puts(b, "null");
    buf_printf(b, ",\"events\":%" PRIu64 ",\"bids\":%" PRIu64 ",\"transactions\":%" PRIu64 ",\"wall_s\":", p->events,
               p->bids, p->txns);
    put_num(b, p->wall_s);
    buf_puts(b, ",\"client_cpu_s\":");
    put_num(b, p->client_cpu_s);
    buf_puts(b, ",\"server_cpu_s\":");
    if (p->server_cpu_s >= 0)
        put_num(b, p->server_cpu_s);
    else
        buf_puts(b, "null");
    buf_puts(b, ",\"events_per_s\":");
    put_rate(b, (double)p->events, p->wall_s);
    buf_puts(b, ",\"bids_per_s\":");
    put_rate(b, (double)p->bids, p->wall_s);
    buf_puts(b, ",\"events_per_cpu_s\":");
    put_rate(b, (double)p->events, cpu);
    buf_printf(b, ",\"rows\":%" PRId64 ",\"sum_total_bids\":%" PRId64 ",\"check_ok\":%s}", p->rows, p->total_bids,
               p->status == 0 && (uint64_t)p->total_bids == p->bids ? "true" : "false");
}

static void print_summary(const views_cfg *cfg, const nx_totals *tot, double gen_s, const run_res *runs,
                          const peer_res *peers)
{
    printf("generated %" PRIu64 " Nexmark events (%" PRIu64 " persons, %" PRIu64 " auctions, %zu bids; %.0f MB "
           "typed) in %.2f s = %.0f events/s appended (fsync)\n",
           tot->events, tot->persons, tot->auctions, tot->nbids, (double)tot->bytes / 1e6, gen_s,
           (double)tot->events / gen_s);
    for (size_t k = 0; k < cfg->nruns; k++) {
        const run_res *r = &runs[k];
        buf rd = BUF_INIT;
        store_url_redacted(r->rs->url, &rd);
        printf("\nrun %s into %s: %s\n", r->rs->views, rd.data, r->status ? r->error : "ok");
        buf_release(&rd);
        double cpu = r->cpu.user + r->cpu.sys;
        printf("  all views at the head after %.2f s wall: %.0f events/s end to end; process CPU %.2f s "
               "(user %.2f, sys %.2f): %.0f events/s per core, %.0f view-events/s per core",
               r->wall_s, (double)tot->events / r->wall_s, cpu, r->cpu.user, r->cpu.sys,
               (double)tot->events / cpu, (double)tot->events * r->nviews / cpu);
        if (r->pg)
            printf("; PostgreSQL server CPU %.2f s", r->server_cpu_s);
        printf("\n");
        for (uint32_t i = 0; i < r->nviews; i++) {
            const view_res *v = &r->v[i];
            printf("  %-4s done at %6.2f s, thread CPU %6.2f s = %9.0f events/s per core; %" PRIu64
                   " batches, %" PRIu64 " rows written, %" PRId64 " rows%s%s\n",
                   v->name, v->done_s, v->cpu_s, v->cpu_s > 0 ? (double)tot->events / v->cpu_s : 0, v->st.batches,
                   v->st.rows_written, v->rows, v->st.events_skipped ? ", SKIPPED EVENTS: " : "",
                   v->st.events_skipped ? v->st.last_error : "");
        }
        for (uint32_t i = 0; i < r->nchecks; i++)
            printf("  check %s: %s (expected %.0f, got %.0f)\n", r->checks[i].what, r->checks[i].ok ? "ok" : "FAILED",
                   r->checks[i].expected, r->checks[i].got);
    }
    for (size_t k = 0; k < cfg->npeers; k++) {
        const peer_res *p = &peers[k];
        buf rd = BUF_INIT;
        store_url_redacted(p->url, &rd);
        printf("\npeer (upsert per bid, %d per transaction%s) into %s: %s\n", PEER_TXN,
               p->pg ? (p->pipeline ? ", pipelined" : ", one round trip per statement") : "", rd.data,
               p->status ? p->error : "ok");
        buf_release(&rd);
        printf("  %" PRIu64 " events (%" PRIu64 " bids) in %.2f s = %.0f events/s; client CPU %.2f s, server CPU "
               "%.2f s: %.0f events/s per core; %" PRId64 " rows\n",
               p->events, p->bids, p->wall_s, (double)p->events / p->wall_s, p->client_cpu_s, p->server_cpu_s,
               (double)p->events / (p->client_cpu_s + (p->server_cpu_s > 0 ? p->server_cpu_s : 0)), p->rows);
    }
}

int bench_views(int argc, char **argv)
{
    static const struct option opts[] = {
        {"events", required_argument, NULL, 'n'},      {"seed", required_argument, NULL, 's'},
        {"rate", required_argument, NULL, 'r'},        {"spec", required_argument, NULL, 'S'},
        {"data", required_argument, NULL, 'd'},        {"run", required_argument, NULL, 'R'},
        {"peer", required_argument, NULL, 'p'},        {"peer-sync", required_argument, NULL, 'P'},
        {"peer-seconds", required_argument, NULL, 'T'}, {"timeout", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},              {"help", no_argument, NULL, 'h'},
        {0, 0, 0, 0}};
    views_cfg cfg = {.events = 1000000, .seed = 42, .rate = NX_DEFAULT_RATE, .peer_seconds = 20, .timeout = 600};
    char spec_buf[PATH_MAX + 64], tmpl[512], urlbuf[PATH_MAX + 32];
    int c, rc = 1;
    uint64_t v;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'n':
        case 's':
        case 'r':
        case 'T':
        case 't':
            if (!cli_parse_u64(optarg, &v) || (c != 's' && v == 0)) {
                fprintf(stderr, "payi bench views: --%s must be a whole number%s\n",
                        c == 'n' ? "events" : c == 's' ? "seed" : c == 'r' ? "rate" : c == 'T' ? "peer-seconds" : "timeout",
                        c == 's' ? "" : " > 0");
                return 2;
            }
            if (c == 'n')
                cfg.events = v;
            else if (c == 's')
                cfg.seed = v;
            else if (c == 'r')
                cfg.rate = v;
            else if (c == 'T')
                cfg.peer_seconds = (double)v;
            else
                cfg.timeout = (double)v;
            break;
        case 'S': cfg.spec_path = optarg; break;
        case 'd': cfg.data = optarg; break;
        case 'R': {
            const char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg || !eq[1]) {
                fprintf(stderr, "payi bench views: --run takes VIEWS=URL (VIEWS: all or q0,q17,...), not '%s'\n", optarg);
                return 2;
            }
            cfg.runs = xgrow(cfg.runs, &cfg.capruns, cfg.nruns + 1, sizeof *cfg.runs);
            cfg.runs[cfg.nruns++] = (run_spec){xstrndup(optarg, (size_t)(eq - optarg)), xstrdup(eq + 1)};
            break;
        }
        case 'p':
        case 'P':
            if (c == 'P' && !is_pg_url(optarg)) {
                fprintf(stderr, "payi bench views: --peer-sync takes a postgresql:// URL\n");
                return 2;
            }
            if (!is_pg_url(optarg) && strncmp(optarg, "sqlite:", 7) != 0) {
                fprintf(stderr, "payi bench views: --peer takes sqlite:PATH or a postgresql:// URL\n");
                return 2;
            }
            cfg.peers = xgrow(cfg.peers, &cfg.cappeers, cfg.npeers + 1, sizeof *cfg.peers);
            cfg.peer_sync = xgrow(cfg.peer_sync, &cfg.cappsync, cfg.npeers + 1, sizeof *cfg.peer_sync);
            cfg.peer_sync[cfg.npeers] = c == 'P';
            cfg.peers[cfg.npeers++] = optarg;
            break;
        case 'j': cfg.json = true; break;
        case 'h': fputs(views_help, stdout); return 0;
        default: fputs(views_help, stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "payi bench views: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!cfg.spec_path) {
        repo_file("bench/specs/nexmark.payi", spec_buf, sizeof spec_buf);
        cfg.spec_path = spec_buf;
    }
    bool own_dir = false;
    if (!cfg.data) {
        const char *t = getenv("TMPDIR");
        snprintf(tmpl, sizeof tmpl, "%s/payi-bench-views-XXXXXX", t ? t : "/tmp");
        if (!mkdtemp(tmpl)) {
            perror("payi bench views: mkdtemp");
            return 1;
        }
        cfg.data = tmpl;
        own_dir = true;
    }
    if (cfg.nruns == 0 && cfg.npeers == 0) {
        snprintf(urlbuf, sizeof urlbuf, "sqlite:%s/views.db", cfg.data);
        cfg.runs = xgrow(cfg.runs, &cfg.capruns, 1, sizeof *cfg.runs);
        cfg.runs[cfg.nruns++] = (run_spec){xstrdup("all"), xstrdup(urlbuf)};
    }

    payi_spec *spec = NULL;
    payi_log *log = NULL;
    registry *reg = NULL;
    nx_types ts;
    memset(&ts, 0, sizeof ts);
    nx_totals tot;
    memset(&tot, 0, sizeof tot);
    run_res *runs = xcalloc(cfg.nruns + 1, sizeof *runs);
    peer_res *peers = xcalloc(cfg.npeers + 1, sizeof *peers);
    payi_err err;
    if (spec_load(cfg.spec_path, &spec, &err) != PAYI_OK || view_engine_check(spec, &err) != PAYI_OK) {
        fprintf(stderr, "%s\npayi bench views: cannot use the spec %s\n", err.msg, cfg.spec_path);
        goto out;
    }
    if (nx_types_init(&ts, spec) != 0)
        goto out;
    log_options lo;
    log_options_default(&lo);
    if (log_open(&log, cfg.data, &lo, &err) != PAYI_OK) {
        cli_report(&err, 0);
        goto out;
    }
    if (log_head(log) != 0) {
        fprintf(stderr, "payi bench views: %s already holds a log; give an empty --data directory\n", cfg.data);
        goto out;
    }
    reg = registry_new();
    payi_code prc = registry_refresh(reg, log, &err);
    for (uint32_t k = 0; prc == PAYI_OK && k < spec->nevents; k++)
        prc = registry_register(reg, log, spec->events[k], &err);
    if (prc != PAYI_OK) {
        cli_report(&err, 0);
        goto out;
    }
    int64_t g0 = time_mono_ns();
    if (fill_log(log, &ts, cfg.seed, cfg.rate, cfg.events, &tot) != 0)
        goto out;
    double gen_s = (double)(time_mono_ns() - g0) / 1e9;
    if (!cfg.json)
        fprintf(stderr, "payi bench views: %" PRIu64 " events in the log (%.1f s)\n", tot.events, gen_s);

    int status = 0;
    for (size_t k = 0; k < cfg.nruns; k++) {
        if (!cfg.json)
            fprintf(stderr, "payi bench views: run %s=%s\n", cfg.runs[k].views,
                    is_pg_url(cfg.runs[k].url) ? "postgresql://..." : cfg.runs[k].url);
        run_views(log, reg, spec, &tot, &cfg.runs[k], cfg.timeout, &runs[k]);
        status |= runs[k].status;
        if (runs[k].status)
            fprintf(stderr, "payi bench views: run %s: %s\n", cfg.runs[k].views, runs[k].error);
    }
    for (size_t k = 0; k < cfg.npeers; k++) {
        peer_res *p = &peers[k];
        p->url = cfg.peers[k];
        p->pg = is_pg_url(p->url);
        p->pipeline = p->pg && !cfg.peer_sync[k];
        if (!cfg.json)
            fprintf(stderr, "payi bench views: peer %s%s\n", p->pg ? "postgresql" : p->url,
                    p->pg ? (p->pipeline ? " (pipelined)" : " (one statement per round trip)") : "");
        if (p->pg)
            peer_pg(p->url, p->pipeline, &tot, cfg.peer_seconds, p);
        else
            peer_sqlite(p->url + 7, &tot, cfg.peer_seconds, p);
        if (p->status == 0 && (uint64_t)p->total_bids != p->bids) {
            p->status = 1;
            snprintf(p->error, sizeof p->error, "check failed: sum(total_bids) = %" PRId64 ", %" PRIu64 " bids sent",
                     p->total_bids, p->bids);
        }
        status |= p->status;
        if (p->status)
            fprintf(stderr, "payi bench views: peer %s: %s\n", p->pg ? "postgresql" : p->url, p->error);
    }

    if (cfg.json) {
        buf b = BUF_INIT;
        buf_printf(&b, "{\"bench\":\"views\",\"events\":%" PRIu64 ",\"seed\":%" PRIu64 ",\"rate\":%" PRIu64 ",\"spec\":",
                   cfg.events, cfg.seed, cfg.rate);
        put_str(&b, cfg.spec_path);
        buf_puts(&b, ",\"data_dir\":");
        put_str(&b, cfg.data);
        buf_printf(&b,
                   ",\"generate\":{\"events\":%" PRIu64 ",\"persons\":%" PRIu64 ",\"auctions\":%" PRIu64
                   ",\"bids\":%zu,\"q2_bids\":%" PRIu64 ",\"price_sum\":%" PRId64 ",\"typed_bytes\":%" PRIu64
                   ",\"durability\":\"fsync\",\"seconds\":",
                   tot.events, tot.persons, tot.auctions, tot.nbids, tot.q2_bids, tot.price_sum, tot.bytes);
        put_num(&b, gen_s);
        buf_puts(&b, ",\"events_per_s\":");
        put_rate(&b, (double)tot.events, gen_s);
        buf_printf(&b, "},\"main_tid\":%d,\"runs\":[", (int)getpid());
        for (size_t k = 0; k < cfg.nruns; k++) {
            if (k)
                buf_putc(&b, ',');
            write_run_json(&b, &runs[k], &tot);
        }
        buf_puts(&b, "],\"peers\":[");
        for (size_t k = 0; k < cfg.npeers; k++) {
            if (k)
                buf_putc(&b, ',');
            write_peer_json(&b, &peers[k]);
        }
        buf_puts(&b, "]}\n");
        fwrite(b.data, 1, b.len, stdout);
        buf_release(&b);
    } else {
        print_summary(&cfg, &tot, gen_s, runs, peers);
    }
    rc = status ? 1 : 0;
out:
    if (log)
        log_close(log);
    registry_free(reg);
    nx_types_release(&ts);
    spec_free(spec);
    free(tot.bids);
    for (size_t k = 0; k < cfg.nruns; k++) {
        free(runs[k].v);
        free(cfg.runs[k].views);
        free(cfg.runs[k].url);
    }
    free(runs);
    free(peers);
    free(cfg.runs);
    free(cfg.peers);
    free(cfg.peer_sync);
    if (own_dir && rm_entry(cfg.data) != 0)
        fprintf(stderr, "payi bench views: could not remove %s\n", cfg.data);
    return rc;
}

/* ------------------------------------------------------------ payi bench views-latency */

static const char latency_help[] =
    "usage: payi bench views-latency --url http://127.0.0.1:PORT [--rate R] [--seconds S]\n"
    "                                [--connections C] [--views LIST] [--seed S] [--json]\n"
    "\n"
    "The time from a command's acknowledgement to its change arriving on /views/{name}/changes,\n"
    "against a running `payi serve --spec bench/specs/nexmark.payi` with an empty log.  Opens one\n"
    "SSE stream per view of LIST (default q0,q17), then sends POST /commands/PlaceBid (Nexmark bids\n"
    "from the generator) at a fixed rate R (default 10,000/s) for S seconds (default 10) over C\n"
    "keep-alive connections (default 128; a command waits for a free connection when all are busy,\n"
    "and the report says how late sends were), and records each acknowledgement (its position)\n"
    "and each change's arrival.  A command is visible in a row view when a change carries its\n"
    "event_position; in q17 when a change of its auction carries total_bids >= its rank among\n"
    "that auction's commands by position.  Reports p50/p90/p99/p99.9/max of change arrival -\n"
    "ack arrival per view (negative: the change arrived before the acknowledgement), and the\n"
    "acknowledgement latency.  Everything is bounded: the run, then at most 10 s for answers and\n"
    "changes to settle.\n";

typedef struct lat_cmd {
    int64_t sched_ns, send_ns, ack_ns;
    uint64_t position;
    int64_t auction;
    int status;                 /* HTTP status of the answer; 0: none */
    uint32_t req_off, req_len;
} lat_cmd;

typedef struct lat_change {
    int64_t at_ns;
    uint64_t position;          /* row views: event_position */
    int64_t auction, total;     /* q17: its key and total_bids */
    bool has_position, has_count;
} lat_change;

typedef struct sse_reader {
    struct sockaddr_in addr;
    char view[64];
    pthread_t th;
    atomic_int state;           /* 0 connecting, 1 streaming, -1 failed */
    atomic_bool stop;
    atomic_size_t count;
    lat_change *ch;
    size_t cap;
    uint64_t resets;
    char error[256];
} sse_reader;

static int connect_to(const struct sockaddr_in *a)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (const struct sockaddr *)a, sizeof *a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static bool field_i64(const char *s, const char *key, int64_t *out)
{
    const char *p = strstr(s, key);
    if (!p)
        return false;
    char *end;
    *out = strtoll(p + strlen(key), &end, 10);
    return end != p + strlen(key);
}

static void sse_line(sse_reader *r, const char *line, int64_t at)
{
    if (!strncmp(line, "event: reset", 12)) {
        r->resets++;
        return;
    }
    if (strncmp(line, "data: ", 6) != 0)
        return;
    lat_change c = {.at_ns = at};
    int64_t x;
    if (field_i64(line, "\"event_position\":", &x)) {
        c.position = (uint64_t)x;
        c.has_position = true;
    }
    if (field_i64(line, "\"auction\":", &c.auction) && field_i64(line, "\"total_bids\":", &c.total))
        c.has_count = true;
    if (!c.has_position && !c.has_count)
        return;
    size_t n = atomic_load(&r->count);
    r->ch = xgrow(r->ch, &r->cap, n + 1, sizeof *r->ch);
    r->ch[n] = c;
    atomic_store(&r->count, n + 1);
}

/* One SSE stream (HTTP/1.0: the body is the raw stream, no chunks), read
 * until told to stop. */
static void *sse_main(void *arg)
{
    sse_reader *r = arg;
    int fd = connect_to(&r->addr);
    if (fd < 0) {
        snprintf(r->error, sizeof r->error, "connect: %s", strerror(errno));
        atomic_store(&r->state, -1);
        return NULL;
    }
    char req[256];
    int n = snprintf(req, sizeof req, "GET /views/%s/changes HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n",
                     r->view);
    if (!write_all(fd, req, (size_t)n)) {
        snprintf(r->error, sizeof r->error, "write: %s", strerror(errno));
        atomic_store(&r->state, -1);
        close(fd);
        return NULL;
    }
    buf in = BUF_INIT;
    bool headers = false;
    char tmp[65536];
    while (!atomic_load(&r->stop)) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t got = read(fd, tmp, sizeof tmp);
        int64_t at = time_mono_ns();
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            snprintf(r->error, sizeof r->error, "the server closed the stream");
            break;
        }
        buf_put(&in, tmp, (size_t)got);
        size_t off = 0;
        if (!headers) {
            char *end = strstr(in.data, "\r\n\r\n");
            if (!end)
                continue;
            if (strncmp(in.data, "HTTP/1.", 7) != 0 || strncmp(in.data + 9, "200", 3) != 0) {
                snprintf(r->error, sizeof r->error, "GET /views/%s/changes: %.80s", r->view, in.data);
                break;
            }
            headers = true;
            atomic_store(&r->state, 1);
            off = (size_t)(end + 4 - in.data);
        }
        for (;;) {
            char *nl = memchr(in.data + off, '\n', in.len - off);
            if (!nl)
                break;
            *nl = '\0';
            sse_line(r, in.data + off, at);
            off = (size_t)(nl + 1 - in.data);
        }
        memmove(in.data, in.data + off, in.len - off);
        in.len -= off;
        in.data[in.len] = '\0';
    }
    if (atomic_load(&r->state) != 1)
        atomic_store(&r->state, -1);
    buf_release(&in);
    close(fd);
    return NULL;
}

typedef struct lat_conn {
    int fd;
    int64_t cmd;                /* the command in flight, -1: idle */
    buf in;
} lat_conn;

/* Parse complete answers in c->in; returns -1 on a malformed answer. */
static int conn_answers(lat_conn *c, lat_cmd *cmds, int64_t at, uint64_t *answered)
{
    for (;;) {
        if (!c->in.len)
            return 0;
        char *hend = strstr(c->in.data, "\r\n\r\n");
        if (!hend)
            return 0;
        if (c->cmd < 0 || strncmp(c->in.data, "HTTP/1.", 7) != 0)
            return -1;
        int status = atoi(c->in.data + 9);
        const char *cl = strcasestr(c->in.data, "\r\ncontent-length:");
        if (!cl || cl > hend)
            return -1;
        size_t blen = (size_t)strtoul(cl + 17, NULL, 10), hlen = (size_t)(hend + 4 - c->in.data);
        if (c->in.len < hlen + blen)
            return 0;
        lat_cmd *m = &cmds[c->cmd];
        m->ack_ns = at;
        m->status = status;
        char save = c->in.data[hlen + blen];
        c->in.data[hlen + blen] = '\0';
        int64_t pos;
        if (field_i64(c->in.data + hlen, "\"position\":", &pos))
            m->position = (uint64_t)pos;
        c->in.data[hlen + blen] = save;
        (*answered)++;
        c->cmd = -1;
        memmove(c->in.data, c->in.data + hlen + blen, c->in.len - hlen - blen);
        c->in.len -= hlen + blen;
        c->in.data[c->in.len] = '\0';
    }
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted values, in µs. */
static double pct(const int64_t *v, size_t n, double p)
{
    if (!n)
        return NAN;
    size_t k = (size_t)ceil(p / 100.0 * (double)n);
    if (k < 1)
        k = 1;
    return (double)v[k - 1] / 1000.0;
}

static void put_dist(buf *b, int64_t *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_i64);
    static const double ps[] = {50, 90, 99, 99.9};
    static const char *const names[] = {"p50", "p90", "p99", "p999"};
    buf_printf(b, "{\"n\":%zu", n);
    for (int i = 0; i < 4; i++) {
        buf_printf(b, ",\"%s\":", names[i]);
        put_num(b, pct(v, n, ps[i]));
    }
    buf_puts(b, ",\"min\":");
    put_num(b, n ? (double)v[0] / 1000.0 : NAN);
    buf_puts(b, ",\"max\":");
    put_num(b, n ? (double)v[n - 1] / 1000.0 : NAN);
    buf_putc(b, '}');
}

typedef struct pos_at {
    uint64_t position;
    int64_t at;
} pos_at;

static int cmp_pos_at(const void *a, const void *b)
{
    const pos_at *x = a, *y = b;
    if (x->position != y->position)
        return x->position < y->position ? -1 : 1;
    return x->at < y->at ? -1 : x->at > y->at;
}

typedef struct key_ref {
    int64_t key;
    uint64_t order;             /* command: position; change: arrival index */
    size_t i;
} key_ref;

static int cmp_key_ref(const void *a, const void *b)
{
    const key_ref *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* For every command answered 2xx, when its change arrived (0: never). */
static void match_changes(const sse_reader *r, const lat_cmd *cmds, size_t ncmds, int64_t *seen)
{
    size_t nch = atomic_load(&r->count);
    memset(seen, 0, ncmds * sizeof *seen);
    bool by_pos = nch && r->ch[0].has_position;
    if (by_pos) {
        pos_at *pa = xmalloc((nch + 1) * sizeof *pa);
        for (size_t i = 0; i < nch; i++)
            pa[i] = (pos_at){r->ch[i].position, r->ch[i].at_ns};
        qsort(pa, nch, sizeof *pa, cmp_pos_at);
        for (size_t k = 0; k < ncmds; k++) {
            if (cmds[k].status < 200 || cmds[k].status > 299)
                continue;
            size_t lo = 0, hi = nch;
            while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (pa[mid].position < cmds[k].position)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (lo < nch && pa[lo].position == cmds[k].position)
                seen[k] = pa[lo].at;
        }
        free(pa);
        return;
    }
    /* Counts per key: the k-th command of a key (by position) is in once a
     * change of that key says total >= k. */
    key_ref *cr = xmalloc((ncmds + 1) * sizeof *cr), *hr = xmalloc((nch + 1) * sizeof *hr);
    size_t nc = 0;
    for (size_t k = 0; k < ncmds; k++)
        if (cmds[k].status >= 200 && cmds[k].status <= 299)
            cr[nc++] = (key_ref){cmds[k].auction, cmds[k].position, k};
    for (size_t i = 0; i < nch; i++)
        hr[i] = (key_ref){r->ch[i].auction, i, i};
    qsort(cr, nc, sizeof *cr, cmp_key_ref);
    qsort(hr, nch, sizeof *hr, cmp_key_ref);
    size_t j = 0;
    for (size_t a = 0; a < nc;) {
        size_t b = a;
        while (b < nc && cr[b].key == cr[a].key)
            b++;
        while (j < nch && hr[j].key < cr[a].key)
            j++;
        size_t next = a;   /* the first command of the key not yet seen */
        for (; j < nch && hr[j].key == cr[a].key; j++) {
            const lat_change *c = &r->ch[hr[j].i];
            while (next < b && (int64_t)(next - a + 1) <= c->total)
                seen[cr[next++].i] = c->at_ns;
        }
        a = b;
    }
    free(cr);
    free(hr);
}

int bench_views_latency(int argc, char **argv)
{
    static const struct option opts[] = {{"url", required_argument, NULL, 'u'},         {"rate", required_argument, NULL, 'r'},
                                         {"seconds", required_argument, NULL, 's'},     {"connections", required_argument, NULL, 'c'},
                                         {"views", required_argument, NULL, 'v'},       {"seed", required_argument, NULL, 'S'},
                                         {"json", no_argument, NULL, 'j'},              {"help", no_argument, NULL, 'h'},
                                         {0, 0, 0, 0}};
    const char *url = NULL, *views = "q0,q17";
    uint64_t rate = 10000, seconds = 10, nconn = 128, seed = 7, v;
    bool json = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'u': url = optarg; break;
        case 'v': views = optarg; break;
        case 'j': json = true; break;
        case 'r':
        case 's':
        case 'c':
        case 'S':
            if (!cli_parse_u64(optarg, &v) || (c != 'S' && v == 0) || (c == 'r' && v > 1000000) ||
                (c == 's' && v > 600) || (c == 'c' && v > 1024)) {
                fprintf(stderr, "payi bench views-latency: bad --%s (rate 1..1000000, seconds 1..600, "
                                "connections 1..1024)\n",
                        c == 'r' ? "rate" : c == 's' ? "seconds" : c == 'c' ? "connections" : "seed");
                return 2;
            }
            if (c == 'r')
                rate = v;
            else if (c == 's')
                seconds = v;
            else if (c == 'c')
                nconn = v;
            else
                seed = v;
            break;
        case 'h': fputs(latency_help, stdout); return 0;
        default: fputs(latency_help, stderr); return 2;
        }
    }
    struct sockaddr_in addr = {.sin_family = AF_INET};
    char host[64];
    unsigned port = 0;
    if (!url || sscanf(url, "http://%63[0-9.]:%u", host, &port) != 2 || port == 0 || port > 65535 ||
        inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "payi bench views-latency: --url must be http://IPV4:PORT\n");
        return 2;
    }
    addr.sin_port = htons((uint16_t)port);

    /* The commands: Nexmark bids, bodies made before the clock starts. */
    size_t total = (size_t)(rate * seconds);
    lat_cmd *cmds = xcalloc(total + 1, sizeof *cmds);
    buf reqs = BUF_INIT;
    nx_gen *g = xmalloc(sizeof *g);
    nx_init(g, seed, NX_DEFAULT_RATE);
    nx_event ev;
    char body[1024], when[TIME_RFC3339_LEN + 1];
    for (size_t k = 0; k < total; k++) {
        do
            nx_next(g, &ev);
        while (ev.kind != NX_BID);
        time_format_rfc3339(ev.ts_us * 1000, when);
        int bl = snprintf(body, sizeof body,
                          "{\"auction\":%" PRId64 ",\"bidder\":%" PRId64 ",\"price\":%" PRId64
                          ",\"channel\":\"%s\",\"url\":\"%s\",\"date_time\":\"%s\",\"extra\":\"%.*s\"}",
                          ev.auction, ev.bidder, ev.price, ev.channel, ev.url, when, (int)ev.extra_len, ev.extra);
        cmds[k].auction = ev.auction;
        cmds[k].req_off = (uint32_t)reqs.len;
        buf_printf(&reqs,
                   "POST /commands/PlaceBid HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   "Content-Length: %d\r\n\r\n%s",
                   bl, body);
        cmds[k].req_len = (uint32_t)(reqs.len - cmds[k].req_off);
    }
    nx_release(g);
    free(g);

    /* The change streams first: they see changes from the moment they open. */
    size_t nviews = 0;
    sse_reader *rd = xcalloc(16, sizeof *rd);
    for (const char *p = views; *p && nviews < 16;) {
        size_t len = strcspn(p, ",");
        sse_reader *r = &rd[nviews++];
        r->addr = addr;
        snprintf(r->view, sizeof r->view, "%.*s", (int)len, p);
        atomic_init(&r->state, 0);
        atomic_init(&r->stop, false);
        atomic_init(&r->count, 0);
        p += len + (p[len] == ',');
    }
    int rc = 1;
    lat_conn *conns = xcalloc(nconn, sizeof *conns);
    int ep = -1, tfd = -1;
    size_t started = 0;
    for (; started < nviews; started++)
        if (pthread_create(&rd[started].th, NULL, sse_main, &rd[started]) != 0)
            break;
    for (int64_t until = time_mono_ns() + 5000000000LL; time_mono_ns() < until;) {
        size_t ready = 0, failed = 0;
        for (size_t i = 0; i < nviews; i++) {
            int s = atomic_load(&rd[i].state);
            ready += s == 1;
            failed += s < 0;
        }
        if (ready == nviews || failed)
            break;
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    for (size_t i = 0; i < nviews; i++)
        if (atomic_load(&rd[i].state) != 1) {
            fprintf(stderr, "payi bench views-latency: /views/%s/changes: %s\n", rd[i].view,
                    rd[i].error[0] ? rd[i].error : "not streaming after 5 s");
            goto out;
        }
    for (size_t i = 0; i < nconn; i++) {
        conns[i].cmd = -1;
        conns[i].fd = connect_to(&addr);
        if (conns[i].fd < 0) {
            fprintf(stderr, "payi bench views-latency: connect %s: %s\n", url, strerror(errno));
            goto out;
        }
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    struct epoll_event ee = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ee);
    for (size_t i = 0; i < nconn; i++) {
        ee.data.u64 = i;
        epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ee);
    }
    size_t *idle = xmalloc(nconn * sizeof *idle), nidle = 0;
    for (size_t i = 0; i < nconn; i++)
        idle[nidle++] = nconn - 1 - i;
    int64_t t0 = time_mono_ns() + 20000000;   /* 20 ms from now */
    for (size_t k = 0; k < total; k++)
        cmds[k].sched_ns = t0 + (int64_t)((double)k * 1e9 / (double)rate);
    int64_t hard_end = t0 + (int64_t)seconds * 1000000000LL + 10000000000LL;
    size_t next = 0;
    uint64_t answered = 0;
    bool broken = false;
    char tmp[65536];
    while (answered < next || next < total) {
        int64_t now = time_mono_ns();
        while (next < total && cmds[next].sched_ns <= now && nidle) {
            lat_conn *cn = &conns[idle[--nidle]];
            cn->cmd = (int64_t)next;
            cmds[next].send_ns = time_mono_ns();
            if (!write_all(cn->fd, reqs.data + cmds[next].req_off, cmds[next].req_len)) {
                broken = true;
                break;
            }
            next++;
        }
        if (broken || now > hard_end)
            break;
        if (next < total && nidle) {
            struct itimerspec it = {{0, 0}, {cmds[next].sched_ns / 1000000000, cmds[next].sched_ns % 1000000000}};
            timerfd_settime(tfd, TFD_TIMER_ABSTIME, &it, NULL);
        }
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, 100);
        int64_t at = time_mono_ns();
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u64 == UINT64_MAX) {
                uint64_t x;
                if (read(tfd, &x, sizeof x) < 0) {
                    /* nothing: the timer is re-armed above */
                }
                continue;
            }
            lat_conn *cn = &conns[evs[i].data.u64];
            ssize_t got = read(cn->fd, tmp, sizeof tmp);
            if (got <= 0) {
                if (got < 0 && errno == EINTR)
                    continue;
                fprintf(stderr, "payi bench views-latency: the server closed a connection\n");
                broken = true;
                break;
            }
            buf_put(&cn->in, tmp, (size_t)got);
            bool was_busy = cn->cmd >= 0;
            if (conn_answers(cn, cmds, at, &answered) != 0) {
                fprintf(stderr, "payi bench views-latency: a malformed answer: %.200s\n", cn->in.data);
                broken = true;
                break;
            }
            if (was_busy && cn->cmd < 0)
                idle[nidle++] = (size_t)evs[i].data.u64;
        }
        if (broken)
            break;
    }
    /* Let the last changes arrive: until no stream got anything for 1 s (at most 10 s). */
    size_t *last = xcalloc(nviews, sizeof *last);
    int64_t quiet_since = time_mono_ns(), settle_end = quiet_since + 10000000000LL;
    while (time_mono_ns() < settle_end && time_mono_ns() - quiet_since < 1000000000LL) {
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
        for (size_t i = 0; i < nviews; i++) {
            size_t cnt = atomic_load(&rd[i].count);
            if (cnt != last[i]) {
                last[i] = cnt;
                quiet_since = time_mono_ns();
            }
        }
    }
    free(last);
    for (size_t i = 0; i < started; i++)
        atomic_store(&rd[i].stop, true);
    for (size_t i = 0; i < started; i++)
        pthread_join(rd[i].th, NULL);
    started = 0;

    /* Results. */
    size_t ok = 0, non2xx = 0;
    int64_t *ack = xmalloc((next + 1) * sizeof *ack), *late = xmalloc((next + 1) * sizeof *late);
    size_t nack = 0;
    for (size_t k = 0; k < next; k++) {
        late[k] = cmds[k].send_ns - cmds[k].sched_ns;
        if (cmds[k].status >= 200 && cmds[k].status <= 299) {
            ok++;
            ack[nack++] = cmds[k].ack_ns - cmds[k].send_ns;
        } else if (cmds[k].status) {
            non2xx++;
        }
    }
    double span = next > 1 ? (double)(cmds[next - 1].send_ns - cmds[0].send_ns) / 1e9 : 0;
    buf b = BUF_INIT;
    buf_puts(&b, "{\"bench\":\"views-latency\",\"url\":");
    put_str(&b, url);
    buf_printf(&b,
               ",\"rate\":%" PRIu64 ",\"seconds\":%" PRIu64 ",\"connections\":%" PRIu64 ",\"commands\":%zu,\"sent\":%zu,"
               "\"answered\":%" PRIu64 ",\"unanswered\":%" PRIu64 ",\"ok\":%zu,\"non_2xx\":%zu,\"broken\":%s,"
               "\"achieved_rate\":",
               rate, seconds, nconn, total, next, answered, (uint64_t)next - answered, ok, non2xx,
               broken ? "true" : "false");
    put_rate(&b, (double)(next > 1 ? next - 1 : 0), span);
    buf_puts(&b, ",\"send_late_us\":");
    put_dist(&b, late, next);
    buf_puts(&b, ",\"ack_us\":");
    put_dist(&b, ack, nack);
    buf_puts(&b, ",\"views\":[");
    int64_t *seen = xmalloc((next + 1) * sizeof *seen), *lat = xmalloc((next + 1) * sizeof *lat);
    bool all_seen = true;
    for (size_t i = 0; i < nviews; i++) {
        sse_reader *r = &rd[i];
        size_t nch = atomic_load(&r->count);
        match_changes(r, cmds, next, seen);
        size_t nl = 0, before = 0, unseen = 0;
        for (size_t k = 0; k < next; k++) {
            if (cmds[k].status < 200 || cmds[k].status > 299)
                continue;
            if (!seen[k]) {
                unseen++;
                continue;
            }
            lat[nl] = seen[k] - cmds[k].ack_ns;
            before += lat[nl] < 0;
            nl++;
        }
        all_seen &= unseen == 0 && r->resets == 0;
        buf_printf(&b, "%s{\"name\":", i ? "," : "");
        put_str(&b, r->view);
        buf_printf(&b, ",\"match\":\"%s\",\"changes\":%zu,\"resets\":%" PRIu64 ",\"matched\":%zu,\"unmatched\":%zu,"
                       "\"before_ack\":%zu,\"ack_to_change_us\":",
                   nch && r->ch[0].has_position ? "event_position" : "auction rank <= total_bids", nch, r->resets, nl,
                   unseen, before);
        put_dist(&b, lat, nl);
        for (size_t k = 0, m = 0; k < next; k++)   /* send -> change, for reference */
            if (cmds[k].status >= 200 && cmds[k].status <= 299 && seen[k])
                lat[m++] = seen[k] - cmds[k].send_ns;
        buf_puts(&b, ",\"send_to_change_us\":");
        put_dist(&b, lat, nl);
        buf_putc(&b, '}');
    }
    buf_puts(&b, "]}\n");
    if (json) {
        fwrite(b.data, 1, b.len, stdout);
    } else {
        /* The same facts, as lines. */
        printf("%s", b.data);
    }
    buf_release(&b);
    free(seen);
    free(lat);
    free(ack);
    free(late);
    free(idle);
    /* Changes not seen (a stream that fell behind its ring gets a reset) are
     * reported, not a failure: the commands were all acknowledged. */
    rc = (!broken && ok == total && non2xx == 0) ? 0 : 1;
    if (rc || !all_seen)
        fprintf(stderr, "payi bench views-latency: %s%zu of %zu commands acknowledged, %s\n", broken ? "stopped early; " : "",
                ok, total, all_seen ? "every change seen" : "some changes not seen (or a stream was reset)");
    if (!broken && answered < next)
        fprintf(stderr,
                "payi bench views-latency: %" PRIu64 " commands sent were never answered within %" PRIu64
                " s after the run (every connection they were sent on stayed silent); sends stopped once all %" PRIu64
                " connections waited\n",
                (uint64_t)next - answered, (uint64_t)10, nconn);
out:
    for (size_t i = 0; i < started; i++)
        atomic_store(&rd[i].stop, true);
    for (size_t i = 0; i < started; i++)
        pthread_join(rd[i].th, NULL);
    for (size_t i = 0; i < nconn; i++) {
        if (conns[i].fd > 0)
            close(conns[i].fd);
        buf_release(&conns[i].in);
    }
    if (ep >= 0)
        close(ep);
    if (tfd >= 0)
        close(tfd);
    for (size_t i = 0; i < nviews; i++)
        free(rd[i].ch);
    free(rd);
    free(conns);
    free(cmds);
    buf_release(&reqs);
    return rc;
}
