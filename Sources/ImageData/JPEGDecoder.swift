import CJPEG

/// JPEG through libjpeg(-turbo), called via the CJPEG C target that keeps libjpeg's
/// setjmp/longjmp error handling on the C side.
enum JPEGDecoder {
    static func probe(_ bytes: UnsafeRawBufferPointer) throws(ImageError) -> ImageHeader {
        var info = cjpeg_info()
        var message = [CChar](repeating: 0, count: Int(CJPEG_MESSAGE_SIZE))
        let status = cjpeg_probe(bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count, &info, &message)
        try check(status, message)
        return header(info)
    }

    static func decode(_ bytes: UnsafeRawBufferPointer, maxPixels: Int) throws(ImageError) -> RGBImage {
        let header = try probe(bytes)
        try ImageCodec.check(header, maxPixels: maxPixels)

        let count = header.pixelCount * header.channels
        var info = cjpeg_info()
        var message = [CChar](repeating: 0, count: Int(CJPEG_MESSAGE_SIZE))
        var buffer = [UInt8](repeating: 0, count: count)
        let status = buffer.withUnsafeMutableBufferPointer { out in
            cjpeg_decode(bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count, UInt64(maxPixels),
                         out.baseAddress, out.count, &info, &message)
        }
        try check(status, message, header: header, maxPixels: maxPixels)
        return buffer.withUnsafeBufferPointer { b in
            RGBImage(width: header.width, height: header.height, channels: header.channels, bytes: b)
        }
    }

    private static func header(_ info: cjpeg_info) -> ImageHeader {
        ImageHeader(format: .jpeg, width: Int(info.width), height: Int(info.height), channels: Int(info.output_channels))
    }

    private static func check(_ status: cjpeg_status, _ message: [CChar], header: ImageHeader? = nil,
                              maxPixels: Int = 0) throws(ImageError) {
        let text = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        switch status {
        case CJPEG_OK: return
        case CJPEG_TRUNCATED: throw .truncated(.jpeg)
        case CJPEG_UNSUPPORTED: throw .unsupported(.jpeg, text)
        case CJPEG_TOO_LARGE:
            throw .tooLarge(.jpeg, width: header?.width ?? 0, height: header?.height ?? 0, maxPixels: maxPixels)
        default: throw .corrupt(.jpeg, text)
        }
    }
}
