import CPNG

/// PNG writing through libpng's simplified API (8-bit gray or RGB; default compression, or its fast mode).
public enum PNGEncoder {
    /// Encodes an image; samples are clamped to 0…1 and rounded to 8 bits. `fast`: libpng's
    /// speed-over-size mode (no row filters, light deflate), for images made per request.
    public static func encode(_ image: RGBImage, fast: Bool = false) throws(ImageError) -> [UInt8] {
        try encode(bytes: image.bytes(), width: image.width, height: image.height, channels: image.channels, fast: fast)
    }

    /// Encodes 8-bit samples: row-major, interleaved, `channels` 1 (gray) or 3 (RGB).
    public static func encode(bytes: [UInt8], width: Int, height: Int, channels: Int, fast: Bool = false) throws(ImageError) -> [UInt8] {
        precondition(channels == 1 || channels == 3, "PNG encoding takes 1 or 3 channels, not \(channels)")
        precondition(width > 0 && height > 0 && bytes.count == width * height * channels,
                     "\(bytes.count) bytes for \(width)×\(height)×\(channels)")
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        image.width = UInt32(width)
        image.height = UInt32(height)
        image.format = channels == 1 ? 0 : UInt32(PNG_FORMAT_FLAG_COLOR)  // PNG_FORMAT_GRAY or _RGB
        if fast { image.flags = UInt32(PNG_IMAGE_FLAG_FAST) }

        // Deflate rarely expands data by more than a few per cent; if it does, libpng tells
        // us the size it needs and we write once more.
        var capacity = bytes.count + bytes.count / 8 + height + 1024
        for _ in 0..<2 {
            var out = [UInt8](repeating: 0, count: capacity)
            var size = capacity
            let ok = out.withUnsafeMutableBytes { o in
                bytes.withUnsafeBytes { b in
                    png_image_write_to_memory(&image, o.baseAddress, &size, 0, b.baseAddress, 0, nil)
                }
            }
            if ok != 0 {
                out.removeSubrange(size...)
                return out
            }
            guard size > capacity else { break }
            capacity = size
            image.opaque = nil
        }
        let message = withUnsafeBytes(of: image.message) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        png_image_free(&image)
        throw .encodeFailed(message.isEmpty ? "libpng could not write the image" : message)
    }
}
