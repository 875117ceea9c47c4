// libpng 1.6's simplified png_image_* API: errors come back as return codes, no longjmp.
#include <png.h>
