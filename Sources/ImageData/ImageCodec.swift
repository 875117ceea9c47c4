public enum ImageFormat: String, Sendable, Codable, CaseIterable {
    case png, jpeg

    var name: String { self == .png ? "PNG" : "JPEG" }
}

/// What a header says, read without decoding any pixels.
public struct ImageHeader: Sendable, Equatable {
    public let format: ImageFormat
    public let width: Int
    public let height: Int
    /// Channels `decode` will return: 1 for gray files, 3 otherwise.
    public let channels: Int

    public init(format: ImageFormat, width: Int, height: Int, channels: Int) {
        self.format = format
        self.width = width
        self.height = height
        self.channels = channels
    }

    /// width × height, or `Int.max` when that overflows (a header may declare 2³²−1 each way):
    /// always safe to compare with a limit.
    public var pixelCount: Int {
        let (product, overflow) = width.multipliedReportingOverflow(by: height)
        return overflow ? .max : product
    }
}

/// PNG and JPEG decoding: `probe` reads the header only; `decode` checks the pixel count
/// against `maxPixels` before allocating anything for the image (decompression bombs are
/// refused from their header).
public enum ImageCodec {
    /// 40 megapixels: any photo a camera makes, far below what would exhaust memory
    /// (a float RGB image of that size is 480 MB).
    public static let defaultMaxPixels = 40_000_000

    static let pngSignature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    /// The format from the first bytes.
    public static func format(of bytes: UnsafeRawBufferPointer) throws(ImageError) -> ImageFormat {
        if bytes.isEmpty { throw .empty }
        if bytes.starts(with: pngSignature) { return .png }
        if bytes.count >= 3, bytes[0] == 0xFF, bytes[1] == 0xD8, bytes[2] == 0xFF { return .jpeg }
        // A prefix of a valid signature is a truncated file, not a foreign one.
        if pngSignature.starts(with: bytes) { throw .truncated(.png) }
        if [0xFF, 0xD8, 0xFF].starts(with: bytes) { throw .truncated(.jpeg) }
        throw .unknownFormat(magic: Array(bytes.prefix(8)))
    }

    public static func probe(_ bytes: [UInt8]) throws(ImageError) -> ImageHeader {
        try bytes.withUnsafeBytes { raw in Result { () throws(ImageError) in try probe(raw) } }.get()
    }

    public static func probe(_ bytes: UnsafeRawBufferPointer) throws(ImageError) -> ImageHeader {
        switch try format(of: bytes) {
        case .png: try PNGDecoder.probe(bytes)
        case .jpeg: try JPEGDecoder.probe(bytes)
        }
    }

    public static func decode(_ bytes: [UInt8], maxPixels: Int = defaultMaxPixels) throws(ImageError) -> RGBImage {
        try bytes.withUnsafeBytes { raw in Result { () throws(ImageError) in try decode(raw, maxPixels: maxPixels) } }.get()
    }

    public static func decode(_ bytes: UnsafeRawBufferPointer, maxPixels: Int = defaultMaxPixels) throws(ImageError) -> RGBImage {
        switch try format(of: bytes) {
        case .png: try PNGDecoder.decode(bytes, maxPixels: maxPixels)
        case .jpeg: try JPEGDecoder.decode(bytes, maxPixels: maxPixels)
        }
    }

    /// Throws `.tooLarge` or `.invalidDimensions` for a header that must not be decoded.
    static func check(_ header: ImageHeader, maxPixels: Int) throws(ImageError) {
        guard header.width > 0, header.height > 0 else {
            throw .invalidDimensions(header.format, width: header.width, height: header.height)
        }
        guard header.pixelCount <= maxPixels else {
            throw .tooLarge(header.format, width: header.width, height: header.height, maxPixels: maxPixels)
        }
    }
}
