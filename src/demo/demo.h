/* demo.h — `payi demo`: the COVID-19 monitoring app of the paper on the real
 * JHU CSSE data, served with its dashboard, fed day by day. */
#ifndef PAYI_DEMO_H
#define PAYI_DEMO_H

int demo_main(int argc, char **argv);

#endif
