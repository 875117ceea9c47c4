// zlib's inflate, for the gzip-compressed IDX files of Fashion-MNIST.
#include <zlib.h>
