/* profile.h: what the per-op marks of a training step (netc_profile_mark,
 * declared in netc_model.h for the generated code) add up to. */
#ifndef NETC_PROFILE_H
#define NETC_PROFILE_H

#include "model/netc_model.h"

/* Prints s->prof_seconds, gathered over `steps` steps, by op kind and by
 * layer (the 25 slowest), each split into forward and backward; then, when
 * the environment has NETC_PROFILE_ALL set (and not to 0), one
 * machine-readable "profile_op" line per op (profile.c says its fields). */
void print_profile(const NetcState *s, int steps);

#endif
