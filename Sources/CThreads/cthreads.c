#define _GNU_SOURCE
#include "cthreads.h"
#include <sys/syscall.h>
#include <unistd.h>

pid_t mimserve_gettid(void) { return (pid_t)syscall(SYS_gettid); }
