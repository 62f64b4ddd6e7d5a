/* The library's version at run time (the headers' is UVQ_VERSION). */
#include "uvquic/uvquic.h"

const char *uvq_version(void) { return UVQ_VERSION; }
