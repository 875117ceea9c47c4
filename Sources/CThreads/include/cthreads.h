#ifndef MIMSERVE_CTHREADS_H
#define MIMSERVE_CTHREADS_H
#include <sys/types.h>

/// The kernel id of the calling thread (gettid(2)), which setpriority(2) takes to change one
/// thread's nice value; Swift's Glibc module does not export gettid.
pid_t mimserve_gettid(void);

#endif
