import CPNG

/// PNG through libpng's simplified API (errors are return codes; no longjmp).
///
/// 8-bit files are read as 8-bit gray+alpha or RGBA and the alpha dropped here: asking libpng
/// for a format without alpha would composite onto the buffer instead.
///
/// 16-bit files are read through libpng's 16-bit "linear" formats: libpng assumes a 16-bit
/// file without gamma chunks is linear, so asking for linear output leaves the samples
/// untouched and we keep all 16 bits. (Asking for 8-bit sRGB output instead scrambles
/// interlaced 16-bit files in libpng 1.6.39.) The price: with alpha, linear output is
/// premultiplied, so colour is divided back by alpha, exact to a few 65535ths for visible
/// pixels and meaningless only where the pixel is (almost) fully transparent.
enum PNGDecoder {
    static func probe(_ bytes: UnsafeRawBufferPointer) throws(ImageError) -> ImageHeader {
        // The signature (8 bytes), then IHDR: length, "IHDR", width, height, depth, colour type.
        guard bytes.count >= 26 else { throw .truncated(.png) }
        guard bytes[12] == 0x49, bytes[13] == 0x48, bytes[14] == 0x44, bytes[15] == 0x52 else {
            throw .corrupt(.png, "the first chunk is not IHDR")
        }
        let width = Int(bigEndian32(bytes, at: 16)), height = Int(bigEndian32(bytes, at: 20))
        // Colour types 0 (gray) and 4 (gray + alpha) decode to one channel.
        let colourType = bytes[25]
        return ImageHeader(format: .png, width: width, height: height, channels: colourType & 2 == 0 ? 1 : 3)
    }

    static func decode(_ bytes: UnsafeRawBufferPointer, maxPixels: Int) throws(ImageError) -> RGBImage {
        let header = try probe(bytes)
        try ImageCodec.check(header, maxPixels: maxPixels)
        // libpng stops reading once it has the pixels; a file cut anywhere after that (even
        // just its IEND) is still a damaged file, so walk the chunk lengths first.
        if endsEarly(bytes) { throw .truncated(.png) }

        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        guard png_image_begin_read_from_memory(&image, bytes.baseAddress, bytes.count) != 0 else {
            throw failure(&image)
        }
        // The header we checked is the header libpng read, but trust libpng's numbers.
        let width = Int(image.width), height = Int(image.height)
        guard ImageHeader(format: .png, width: width, height: height, channels: 3).pixelCount <= maxPixels else {
            png_image_free(&image)
            throw .tooLarge(.png, width: width, height: height, maxPixels: maxPixels)
        }
        let gray = image.format & UInt32(PNG_FORMAT_FLAG_COLOR) == 0
        let channels = gray ? 1 : 3
        let pixels = bytes[24] == 16
            ? try read16(&image, bytes, channels: channels, alpha: image.format & UInt32(PNG_FORMAT_FLAG_ALPHA) != 0)
            : try read8(&image, bytes, channels: channels)
        return RGBImage(width: width, height: height, channels: channels, pixels: pixels)
    }

    private static func read8(_ image: inout png_image, _ bytes: UnsafeRawBufferPointer, channels: Int) throws(ImageError) -> [Float] {
        let count = Int(image.width) * Int(image.height), stored = channels + 1
        image.format = UInt32(PNG_FORMAT_FLAG_ALPHA) | (channels == 1 ? 0 : UInt32(PNG_FORMAT_FLAG_COLOR))  // GA or RGBA
        var buffer = [UInt8](repeating: 0, count: count * stored)
        let ok = buffer.withUnsafeMutableBytes { png_image_finish_read(&image, nil, $0.baseAddress, 0, nil) }
        guard ok != 0 else { throw failure(&image) }
        return [Float](unsafeUninitializedCapacity: count * channels) { out, n in
            for p in 0..<count {
                for c in 0..<channels { out[p * channels + c] = Float(buffer[p * stored + c]) / 255 }
            }
            n = count * channels
        }
    }

    private static func read16(_ image: inout png_image, _ bytes: UnsafeRawBufferPointer, channels: Int,
                               alpha: Bool) throws(ImageError) -> [Float] {
        let count = Int(image.width) * Int(image.height), stored = channels + (alpha ? 1 : 0)
        image.format = UInt32(PNG_FORMAT_FLAG_LINEAR) | (channels == 1 ? 0 : UInt32(PNG_FORMAT_FLAG_COLOR))
            | (alpha ? UInt32(PNG_FORMAT_FLAG_ALPHA) : 0)
        var buffer = [UInt16](repeating: 0, count: count * stored)
        let ok = buffer.withUnsafeMutableBytes { png_image_finish_read(&image, nil, $0.baseAddress, 0, nil) }
        guard ok != 0 else { throw failure(&image) }
        return [Float](unsafeUninitializedCapacity: count * channels) { out, n in
            for p in 0..<count {
                // Premultiplied colour back to straight colour; fully transparent stays black.
                let a = alpha ? Float(buffer[p * stored + channels]) : 65535
                let scale: Float = a > 0 ? 1 / a : 0
                for c in 0..<channels { out[p * channels + c] = min(1, Float(buffer[p * stored + c]) * scale) }
            }
            n = count * channels
        }
    }

    /// libpng's message for a failed read.
    private static func failure(_ image: inout png_image) -> ImageError {
        let message = withUnsafeBytes(of: image.message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        png_image_free(&image)
        return .corrupt(.png, message)
    }

    /// True when the chunk sequence runs past the end of the data before IEND.
    static func endsEarly(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var at = 8
        while true {
            guard at + 8 <= bytes.count else { return true }
            let length = Int(bigEndian32(bytes, at: at))
            let isEnd = bytes[at + 4] == 0x49 && bytes[at + 5] == 0x45 && bytes[at + 6] == 0x4E && bytes[at + 7] == 0x44
            at += 12 + length
            if at > bytes.count { return true }
            if isEnd { return false }
        }
    }

    private static func bigEndian32(_ bytes: UnsafeRawBufferPointer, at i: Int) -> UInt32 {
        UInt32(bytes[i]) << 24 | UInt32(bytes[i + 1]) << 16 | UInt32(bytes[i + 2]) << 8 | UInt32(bytes[i + 3])
    }
}
