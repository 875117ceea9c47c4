// libjpeg reports errors by calling error_exit, which must not return; the only way out is a
// longjmp. Swift cannot be jumped over safely, so the setjmp, the libjpeg calls and the jump
// all stay in this file, and Swift sees a status code and a message.
#include "cjpeg.h"

#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

// Progressive files may hold any number of scans, each a full pass over the coefficients;
// thousands of tiny scans make a small file cost minutes of CPU. libjpeg-turbo's own
// TurboJPEG API stops at 500 by default; so do we.
#define CJPEG_MAX_SCANS 500

typedef struct {
    struct jpeg_error_mgr pub;
    struct jpeg_progress_mgr progress;
    jmp_buf jump;
    cjpeg_status status;
    char *message;
} guarded_error;

static void fail(j_common_ptr cinfo, cjpeg_status status) {
    guarded_error *err = (guarded_error *)cinfo->err;
    err->status = status;
    if (err->message) {
        char text[JMSG_LENGTH_MAX];
        err->pub.format_message(cinfo, text);
        snprintf(err->message, CJPEG_MESSAGE_SIZE, "%s", text);
    }
    longjmp(err->jump, 1);
}

static void on_error_exit(j_common_ptr cinfo) {
    fail(cinfo, cinfo->err->msg_code == JERR_INPUT_EOF ? CJPEG_TRUNCATED : CJPEG_CORRUPT);
}

// Warnings (level −1) that mean the pixels are wrong are treated as errors, so a truncated or
// damaged file is reported instead of silently decoded with gray blocks. Harmless warnings
// (extraneous bytes between markers, odd Adobe transforms) are common in real photos: ignored.
static void on_message(j_common_ptr cinfo, int level) {
    if (level >= 0) return;  // trace messages
    switch (cinfo->err->msg_code) {
    case JWRN_JPEG_EOF: fail(cinfo, CJPEG_TRUNCATED); break;
    case JWRN_HIT_MARKER:
    case JWRN_HUFF_BAD_CODE:
    case JWRN_MUST_RESYNC:
    case JWRN_BOGUS_PROGRESSION:
    case JWRN_NOT_SEQUENTIAL: fail(cinfo, CJPEG_CORRUPT); break;
    default: break;
    }
}

static void on_progress(j_common_ptr cinfo) {
    if (cinfo->is_decompressor && ((j_decompress_ptr)cinfo)->input_scan_number > CJPEG_MAX_SCANS) {
        guarded_error *err = (guarded_error *)cinfo->err;
        if (err->message)
            snprintf(err->message, CJPEG_MESSAGE_SIZE, "more than %d progressive scans", CJPEG_MAX_SCANS);
        err->status = CJPEG_TOO_MANY_SCANS;
        longjmp(err->jump, 1);
    }
}

static void describe(j_decompress_ptr cinfo, cjpeg_info *info) {
    info->width = cinfo->image_width;
    info->height = cinfo->image_height;
    info->components = cinfo->num_components;
    info->progressive = cinfo->progressive_mode ? 1 : 0;
    info->output_channels = cinfo->jpeg_color_space == JCS_GRAYSCALE ? 1 : 3;
}

// Chooses libjpeg's output colour space; CMYK and YCCK come out as (inverted) CMYK that
// `cmyk_row_to_rgb` finishes. Returns 0 for colour spaces we cannot turn into RGB.
static int choose_output(j_decompress_ptr cinfo) {
    switch (cinfo->jpeg_color_space) {
    case JCS_GRAYSCALE: cinfo->out_color_space = JCS_GRAYSCALE; return 1;
    case JCS_YCbCr:
    case JCS_RGB: cinfo->out_color_space = JCS_RGB; return 1;
    case JCS_CMYK:
    case JCS_YCCK: cinfo->out_color_space = JCS_CMYK; return 1;
    default: return 0;
    }
}

// Adobe (and Pillow, which writes most CMYK JPEGs we will meet) store CMYK inverted, so a raw
// sample is 255 − ink: red = (255 − C)(255 − K)/255 = rawC · rawK / 255. Rounded like Pillow.
static void cmyk_row_to_rgb(const JSAMPLE *in, uint8_t *out, JDIMENSION width) {
    for (JDIMENSION x = 0; x < width; x++) {
        unsigned k = in[4 * x + 3];
        for (int c = 0; c < 3; c++) {
            unsigned t = in[4 * x + c] * k + 128;
            out[3 * x + c] = (uint8_t)(((t >> 8) + t) >> 8);
        }
    }
}

static void install(j_decompress_ptr cinfo, guarded_error *err, char *message) {
    memset(err, 0, sizeof(*err));
    err->message = message;
    if (message) message[0] = 0;
    cinfo->err = jpeg_std_error(&err->pub);
    err->pub.error_exit = on_error_exit;
    err->pub.emit_message = on_message;
    err->progress.progress_monitor = on_progress;
}

cjpeg_status cjpeg_probe(const uint8_t *data, size_t size, cjpeg_info *info, char message[CJPEG_MESSAGE_SIZE]) {
    struct jpeg_decompress_struct cinfo;
    guarded_error err;
    install(&cinfo, &err, message);
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return err.status;
    }
    jpeg_create_decompress(&cinfo);
    cinfo.progress = &err.progress;
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    describe(&cinfo, info);
    jpeg_destroy_decompress(&cinfo);
    return CJPEG_OK;
}

cjpeg_status cjpeg_decode(const uint8_t *data, size_t size, uint64_t max_pixels, uint8_t *out, size_t out_capacity,
                          cjpeg_info *info, char message[CJPEG_MESSAGE_SIZE]) {
    struct jpeg_decompress_struct cinfo;
    guarded_error err;
    // Volatile: read after a longjmp, so it must not live only in a register.
    JSAMPLE *volatile cmyk_row = NULL;
    install(&cinfo, &err, message);
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return err.status;
    }
    jpeg_create_decompress(&cinfo);
    cinfo.progress = &err.progress;
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    describe(&cinfo, info);
    if ((uint64_t)cinfo.image_width * cinfo.image_height > max_pixels) {
        snprintf(message, CJPEG_MESSAGE_SIZE, "%u x %u pixels is over the cap of %llu", cinfo.image_width,
                 cinfo.image_height, (unsigned long long)max_pixels);
        jpeg_destroy_decompress(&cinfo);
        return CJPEG_TOO_LARGE;
    }
    if (!choose_output(&cinfo)) {
        snprintf(message, CJPEG_MESSAGE_SIZE, "colour space %d with %d components", (int)cinfo.jpeg_color_space,
                 cinfo.num_components);
        jpeg_destroy_decompress(&cinfo);
        return CJPEG_UNSUPPORTED;
    }
    size_t channels = (size_t)info->output_channels, stride = channels * cinfo.image_width;
    if (stride * cinfo.image_height > out_capacity) {
        snprintf(message, CJPEG_MESSAGE_SIZE, "output buffer of %zu bytes is too small", out_capacity);
        jpeg_destroy_decompress(&cinfo);
        return CJPEG_CORRUPT;
    }
    jpeg_start_decompress(&cinfo);
    if (cinfo.out_color_space == JCS_CMYK) {
        // From libjpeg's pool: freed by jpeg_destroy_decompress on every path, jumps included.
        cmyk_row = (*cinfo.mem->alloc_sarray)((j_common_ptr)&cinfo, JPOOL_IMAGE, cinfo.output_width * 4, 1)[0];
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        uint8_t *row = out + stride * cinfo.output_scanline;
        if (cmyk_row) {
            JSAMPROW rows[1] = {cmyk_row};
            jpeg_read_scanlines(&cinfo, rows, 1);
            cmyk_row_to_rgb(cmyk_row, row, cinfo.output_width);
        } else {
            JSAMPROW rows[1] = {row};
            jpeg_read_scanlines(&cinfo, rows, 1);
        }
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    return CJPEG_OK;
}
