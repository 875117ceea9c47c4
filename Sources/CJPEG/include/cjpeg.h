// JPEG decoding through libjpeg(-turbo), with libjpeg's longjmp error handling kept inside C:
// every function returns a status code and a message; nothing ever jumps into Swift.
#ifndef MIMSERVE_CJPEG_H
#define MIMSERVE_CJPEG_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    CJPEG_OK = 0,
    CJPEG_TRUNCATED = 1,    // the data ended early (libjpeg's "Premature end of JPEG file")
    CJPEG_CORRUPT = 2,      // any other libjpeg error or warning: bad markers, bad Huffman data, ...
    CJPEG_UNSUPPORTED = 3,  // valid JPEG we do not turn into RGB (e.g. unknown colour space)
    CJPEG_TOO_LARGE = 4,    // more pixels than the caller allowed (checked before allocating)
    CJPEG_TOO_MANY_SCANS = 5 // a progressive file with absurdly many scans (a known CPU bomb)
} cjpeg_status;

typedef struct {
    uint32_t width;
    uint32_t height;
    int components;     // in the file: 1 gray, 3 YCbCr/RGB, 4 CMYK/YCCK
    int output_channels; // what cjpeg_decode writes: 1 (gray) or 3 (RGB)
    int progressive;
} cjpeg_info;

#define CJPEG_MESSAGE_SIZE 200

/// Reads the header only. `message` receives libjpeg's text on failure.
cjpeg_status cjpeg_probe(const uint8_t *data, size_t size, cjpeg_info *info, char message[CJPEG_MESSAGE_SIZE]);

/// Decodes to 8-bit gray or RGB (CMYK/YCCK are converted to RGB). Checks width × height against
/// `max_pixels` before any image memory is allocated, then writes `info->output_channels` bytes
/// per pixel, row-major, to `out`, which the caller allocated after a probe with the same cap.
/// `out_capacity` guards against a mismatch between the probe and this call.
cjpeg_status cjpeg_decode(const uint8_t *data, size_t size, uint64_t max_pixels, uint8_t *out, size_t out_capacity,
                          cjpeg_info *info, char message[CJPEG_MESSAGE_SIZE]);

#endif
