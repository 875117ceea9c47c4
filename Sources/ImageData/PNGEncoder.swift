import CPNG
import CZlib
import TensorCore

/// PNG writing (8-bit gray or RGB): libpng's simplified API for compact files, or a fast path of
/// our own over zlib for images made per request.
public enum PNGEncoder {
    /// Encodes an image; samples are clamped to 0…1 and rounded to 8 bits. `fast`: speed over
    /// size (see `encodeFast`), its rows compressed in `parts` pieces at once.
    public static func encode(_ image: RGBImage, fast: Bool = false, parts: Int = 1) throws(ImageError) -> [UInt8] {
        try encode(bytes: image.bytes(), width: image.width, height: image.height, channels: image.channels,
                   fast: fast, parts: parts)
    }

    /// Encodes 8-bit samples: row-major, interleaved, `channels` 1 (gray) or 3 (RGB).
    public static func encode(bytes: [UInt8], width: Int, height: Int, channels: Int, fast: Bool = false,
                              parts: Int = 1) throws(ImageError) -> [UInt8] {
        precondition(channels == 1 || channels == 3, "PNG encoding takes 1 or 3 channels, not \(channels)")
        precondition(width > 0 && height > 0 && bytes.count == width * height * channels,
                     "\(bytes.count) bytes for \(width)×\(height)×\(channels)")
        precondition(parts >= 1, "parts must be ≥ 1, got \(parts)")
        if fast { return try encodeFast(bytes, width: width, height: height, channels: channels, parts: parts) }
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        image.width = UInt32(width)
        image.height = UInt32(height)
        image.format = channels == 1 ? 0 : UInt32(PNG_FORMAT_FLAG_COLOR)  // PNG_FORMAT_GRAY or _RGB

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

    /// The fast path. libpng's simplified API has one fast mode (no row filters, deflate level 3)
    /// and cannot compress in parallel. On a photo's strip zlib's entropy coding is most of the
    /// cost at any level or strategy (run-length matches only were no faster and 50 % larger),
    /// so the gain is in doing it on every core: the rows are split into `parts` raw deflate
    /// streams compressed at once. All but the last piece end on a sync flush (an empty stored
    /// block, byte-aligned, not final), so the pieces concatenate into one valid zlib stream, as
    /// pigz does; their Adler-32 sums combine into the stream's. Each row is stored as its
    /// difference from the row above (PNG's Up filter), which with deflate level 1 makes the
    /// file ~10 % smaller than libpng's fast mode. A piece starts with an empty history, which
    /// costs a few bytes.
    static func encodeFast(_ bytes: [UInt8], width: Int, height: Int, channels: Int, parts: Int) throws(ImageError) -> [UInt8] {
        let stride = width * channels, rowBytes = stride + 1
        let pieces = min(parts, height)
        // What each piece may write: zlib's bound for its rows plus the sync flush's 5 bytes.
        let bounds = (0..<pieces).map { p in
            let rows = height * (p + 1) / pieces - height * p / pieces
            return Int(compressBound(uLong(rows * rowBytes))) + 16
        }
        let offsets = bounds.reduce(into: [0]) { $0.append($0.last! + $1) }
        let scratch = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: offsets.last!)
        defer { scratch.deallocate() }
        let sizes = UnsafeMutableBufferPointer<Int>.allocate(capacity: pieces)  // -1: zlib failed
        let sums = UnsafeMutableBufferPointer<uLong>.allocate(capacity: pieces)
        defer { sizes.deallocate(); sums.deallocate() }
        bytes.withUnsafeBufferPointer { src in
            parallelFor(pieces) { range in
                for p in range {
                    let lo = height * p / pieces, hi = height * (p + 1) / pieces
                    var filtered = [UInt8](repeating: 0, count: (hi - lo) * rowBytes)
                    filtered.withUnsafeMutableBufferPointer { f in
                        for y in lo..<hi {
                            let row = src.baseAddress! + y * stride, out = f.baseAddress! + (y - lo) * rowBytes
                            out[0] = 2  // Up; the row above the first is zeros
                            if y == 0 {
                                (out + 1).update(from: row, count: stride)
                            } else {
                                for i in 0..<stride { out[1 + i] = row[i] &- row[i - stride] }
                            }
                        }
                        sums[p] = adler32(1, f.baseAddress, uInt(f.count))
                        sizes[p] = deflatePiece(f, into: scratch.baseAddress! + offsets[p], capacity: bounds[p], last: p == pieces - 1)
                    }
                }
            }
        }
        guard !sizes.contains(where: { $0 < 0 }) else { throw .encodeFailed("zlib could not compress the image") }

        var adler = sums[0]
        for p in 1..<pieces {
            let length = (height * (p + 1) / pieces - height * p / pieces) * rowBytes
            adler = adler32_combine(adler, sums[p], off_t(length))
        }
        var idat: [UInt8] = [0x78, 0x01]  // zlib header: deflate, 32 KiB window, fastest level
        idat.reserveCapacity(sizes.reduce(6, +))
        for p in 0..<pieces { idat.append(contentsOf: UnsafeBufferPointer(start: scratch.baseAddress! + offsets[p], count: sizes[p])) }
        idat.append(contentsOf: bigEndian(UInt32(adler)))
        guard idat.count <= Int(Int32.max) else { throw .encodeFailed("the image does not fit one PNG chunk") }

        var png: [UInt8] = [137, 80, 78, 71, 13, 10, 26, 10]
        png.reserveCapacity(idat.count + 64)
        // IHDR: width, height, bit depth 8, colour type gray (0) or RGB (2), deflate, adaptive
        // filtering, no interlace.
        appendChunk("IHDR", bigEndian(UInt32(width)) + bigEndian(UInt32(height)) + [8, channels == 1 ? 0 : 2, 0, 0, 0], to: &png)
        appendChunk("IDAT", idat, to: &png)
        appendChunk("IEND", [], to: &png)
        return png
    }

    /// Compresses `input` as one raw deflate piece; returns the bytes written, or -1.
    private static func deflatePiece(_ input: UnsafeMutableBufferPointer<UInt8>, into out: UnsafeMutablePointer<UInt8>,
                                     capacity: Int, last: Bool) -> Int {
        var stream = z_stream()
        guard deflateInit2_(&stream, 1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            return -1
        }
        defer { deflateEnd(&stream) }
        stream.next_in = input.baseAddress
        stream.avail_in = uInt(input.count)
        stream.next_out = out
        stream.avail_out = uInt(capacity)
        let status = deflate(&stream, last ? Z_FINISH : Z_SYNC_FLUSH)
        guard status == (last ? Z_STREAM_END : Z_OK), stream.avail_in == 0, stream.avail_out > 0 else { return -1 }
        return capacity - Int(stream.avail_out)
    }

    private static func bigEndian(_ v: UInt32) -> [UInt8] {
        [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)]
    }

    /// A PNG chunk: length, type, data, and the CRC-32 of type and data.
    private static func appendChunk(_ type: String, _ data: [UInt8], to png: inout [UInt8]) {
        let typeBytes = Array(type.utf8)
        var crc = typeBytes.withUnsafeBufferPointer { crc32(0, $0.baseAddress, uInt($0.count)) }
        if !data.isEmpty { crc = data.withUnsafeBufferPointer { crc32(crc, $0.baseAddress, uInt($0.count)) } }  // a nil buffer resets the sum
        png += bigEndian(UInt32(data.count)) + typeBytes + data + bigEndian(UInt32(crc))
    }
}
