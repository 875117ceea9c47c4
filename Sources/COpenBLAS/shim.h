// cblas from the pthread OpenBLAS (Debian's libopenblas-dev puts cblas.h on the include path).
#include <cblas.h>
