/* bench.h — built-in benchmarks (payi bench NAME).  They report numbers, they
 * do not judge them: the scripts in bench/ run them beside the peers and compares. */
#ifndef PAYI_BENCH_H
#define PAYI_BENCH_H

int bench_main(int argc, char **argv);

#endif
