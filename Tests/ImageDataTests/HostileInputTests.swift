import ImageData
import Testing
import TensorCore

/// Hostile input never crashes and never lets a libpng/libjpeg longjmp loose: each case is a
/// typed `ImageError`.
@Suite("Hostile input")
struct HostileInputTests {
    private func error(_ bytes: [UInt8], maxPixels: Int = ImageCodec.defaultMaxPixels) -> ImageError? {
        do {
            _ = try ImageCodec.decode(bytes, maxPixels: maxPixels)
            return nil
        } catch { return error }
    }

    @Test func zeroBytes() {
        #expect(error([]) == .empty)
        #expect(throws: ImageError.empty) { try ImageCodec.probe([]) }
    }

    @Test func wrongMagic() {
        let gif = Array("GIF89a\u{1}\u{0}\u{1}\u{0}".utf8)
        #expect(error(gif) == .unknownFormat(magic: Array(gif.prefix(8))))
        #expect(error([0x00]) == .unknownFormat(magic: [0]))
        #expect(error(ImageError.empty.description.utf8.map { $0 })?.description.contains("not a PNG or JPEG") == true)
    }

    @Test("truncated PNG", arguments: [4, 8, 20, 40, 100, -12, -1])
    func truncatedPNG(_ cut: Int) throws {
        let png = try Fixtures.bytes("rgb8.png")
        let kept = cut > 0 ? Array(png.prefix(cut)) : Array(png.dropLast(-cut))
        #expect(error(kept) == .truncated(.png))
    }

    @Test("truncated JPEG", arguments: [2, 10, 100, 300, 0.5, 0.9] as [Double])
    func truncatedJPEG(_ cut: Double) throws {
        for name in ["baseline.jpg", "progressive.jpg"] {
            let jpeg = try Fixtures.bytes(name)
            let n = cut < 1 ? Int(Double(jpeg.count) * cut) : Int(cut)
            #expect(error(Array(jpeg.prefix(n))) == .truncated(.jpeg), "\(name) cut at \(n)")
        }
    }

    @Test func hugeDeclaredDimensionsAreRefusedFromTheHeader() throws {
        #expect(error(try Fixtures.bytes("huge_dims.png")) == .tooLarge(.png, width: 100_000, height: 100_000,
                                                                         maxPixels: ImageCodec.defaultMaxPixels))
        #expect(error(try Fixtures.bytes("huge_dims.jpg")) == .tooLarge(.jpeg, width: 60000, height: 60000,
                                                                         maxPixels: ImageCodec.defaultMaxPixels))
        // The header still probes: the server can answer 422 with the size.
        #expect(try ImageCodec.probe(try Fixtures.bytes("huge_dims.png")).pixelCount == 10_000_000_000)
    }

    /// A 33-byte PNG whose header declares 4294967295 × 4294967295: width × height overflows
    /// 64 bits, and used to trap in the size check.
    @Test func dimensionsWhoseProductOverflowsAreTooLarge() throws {
        let png = Self.headerOnlyPNG(width: 0xFFFF_FFFF, height: 0xFFFF_FFFF)
        #expect(png.count == 33)
        #expect(error(png) == .tooLarge(.png, width: 0xFFFF_FFFF, height: 0xFFFF_FFFF, maxPixels: ImageCodec.defaultMaxPixels))
        #expect(try ImageCodec.probe(png).pixelCount == .max)
    }

    /// The PNG signature and one IHDR chunk (8-bit RGB) with a correct CRC, nothing else.
    static func headerOnlyPNG(width: UInt32, height: UInt32) -> [UInt8] {
        func be(_ v: UInt32) -> [UInt8] { [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: v >> $0) } }
        let body = Array("IHDR".utf8) + be(width) + be(height) + [8, 2, 0, 0, 0]
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in body {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + be(13) + body + be(~crc)
    }

    @Test func configurableCap() throws {
        for name in ["rgb8.png", "baseline.jpg"] {
            let e = error(try Fixtures.bytes(name), maxPixels: 100)
            #expect(e == .tooLarge(name.hasSuffix("png") ? .png : .jpeg, width: 19, height: 13, maxPixels: 100))
            #expect(e?.description.contains("over the limit of 100 pixels") == true)
        }
        #expect(error(try Fixtures.bytes("rgb8.png"), maxPixels: 19 * 13) == nil)
    }

    @Test func zeroWidth() throws {
        var png = try Fixtures.bytes("rgb8.png")
        png.replaceSubrange(16..<20, with: [0, 0, 0, 0])
        #expect(error(png) == .invalidDimensions(.png, width: 0, height: 13))
    }

    @Test func corruptPNG() throws {
        guard case .corrupt(.png, let message)? = error(try Fixtures.bytes("bad_zlib.png")) else {
            Issue.record("bad deflate data must be .corrupt")
            return
        }
        #expect(!message.isEmpty)
        // A flipped byte inside IDAT: libpng's CRC check.
        var png = try Fixtures.bytes("rgb8.png")
        let idat = try #require(find(png, Array("IDAT".utf8)))
        png[idat + 10] ^= 0x55
        guard case .corrupt(.png, _)? = error(png) else { Issue.record("CRC error must be .corrupt"); return }
    }

    @Test func corruptJPEG() throws {
        // Garbage in the Huffman table: libjpeg's error_exit, caught in C.
        var jpeg = try Fixtures.bytes("baseline.jpg")
        let dht = try #require(find(jpeg, [0xFF, 0xC4]))
        for i in (dht + 4)..<(dht + 20) { jpeg[i] = 0xFF }
        guard case .corrupt(.jpeg, let message)? = error(jpeg) else {
            Issue.record("a bad Huffman table must be .corrupt, got \(String(describing: error(jpeg)))")
            return
        }
        #expect(!message.isEmpty)
        // A stray marker inside the entropy-coded data: a libjpeg warning we treat as fatal.
        var scan = try Fixtures.bytes("baseline.jpg")
        let sos = try #require(find(scan, [0xFF, 0xDA]))
        let at = sos + (scan.count - sos) / 2
        scan.replaceSubrange(at..<(at + 2), with: [0xFF, 0xD9])
        #expect(error(scan) != nil)
    }

    @Test func repeatedProgressiveScansAreRefused() throws {
        // The last scan of a progressive file, repeated 600 times: an inconsistent progression
        // (a fatal warning here) and past the 500-scan limit that stops scan-count CPU bombs.
        let jpeg = try Fixtures.bytes("progressive.jpg")
        let starts = (0..<(jpeg.count - 1)).filter { jpeg[$0] == 0xFF && jpeg[$0 + 1] == 0xDA }
        let last = try #require(starts.last)
        let scan = Array(jpeg[last..<(jpeg.count - 2)])
        let bomb = Array(jpeg[..<(jpeg.count - 2)]) + Array(repeating: scan, count: 600).flatMap { $0 } + [0xFF, 0xD9]
        guard case .corrupt(.jpeg, _)? = error(bomb) else { Issue.record("expected .corrupt, got \(String(describing: error(bomb)))"); return }
    }

    @Test("random damage gives a result or an ImageError, never a crash", arguments: ["rgb8.png", "rgb8_interlaced.png",
          "baseline.jpg", "progressive.jpg", "gray16.png", "cmyk.jpg"])
    func fuzz(_ name: String) throws {
        let original = try Fixtures.bytes(name)
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15 ^ UInt64(name.utf8.count)
        func random(_ n: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(n))
        }
        for _ in 0..<300 {
            var bytes = original
            for _ in 0..<(1 + random(4)) { bytes[random(bytes.count)] = UInt8(random(256)) }
            if random(3) == 0 { bytes.removeLast(random(bytes.count)) }
            _ = error(bytes, maxPixels: 10_000)
        }
    }

    private func find(_ haystack: [UInt8], _ needle: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        return (0...(haystack.count - needle.count)).first { Array(haystack[$0..<($0 + needle.count)]) == needle }
    }
}

@Suite("PNG encoder")
struct PNGEncoderTests {
    @Test("round trip", arguments: [(1, false), (3, false), (1, true), (3, true)])
    func roundTrip(_ channels: Int, fast: Bool) throws {
        let w = 37, h = 11
        let pixels = (0..<(w * h * channels)).map { Float(($0 * 7919) % 256) / 255 }
        let image = RGBImage(width: w, height: h, channels: channels, pixels: pixels)
        let png = try PNGEncoder.encode(image, fast: fast)
        #expect(try ImageCodec.probe(png) == ImageHeader(format: .png, width: w, height: h, channels: channels))
        #expect(try ImageCodec.decode(png) == image)
    }

    /// The fast mode is another encoding of the same pixels: a photo comes back exactly, in a
    /// different file, read by libpng (which checks every chunk's CRC and the zlib stream's
    /// Adler-32 sum).
    @Test func fastModeKeepsThePixels() throws {
        let image = try ImageCodec.decode(try Fixtures.bytes("baseline.jpg"))
        let compact = try PNGEncoder.encode(image), fast = try PNGEncoder.encode(image, fast: true)
        #expect(try ImageCodec.decode(fast).bytes() == image.bytes())
        #expect(fast != compact)
    }

    /// Compressed in pieces, the rows still make one valid zlib stream: any number of pieces,
    /// more pieces than rows, one-pixel-wide images, gray and RGB, on one thread or two.
    @Test("fast mode in pieces", arguments: [(1, 1, 1), (37, 11, 1), (37, 11, 3), (1, 9, 3), (64, 64, 3)])
    func fastModeInPieces(_ w: Int, _ h: Int, _ channels: Int) throws {
        var state: UInt64 = 88172645463325252
        let bytes = (0..<(w * h * channels)).map { i -> UInt8 in
            // Runs, gradients and noise.
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return i % 97 < 40 ? 200 : i % 97 < 70 ? UInt8(truncatingIfNeeded: i) : UInt8(truncatingIfNeeded: state)
        }
        let image = RGBImage(width: w, height: h, channels: channels, pixels: bytes.map { Float($0) / 255 })
        for threads in [1, 2] {
            for parts in [1, 2, 3, 7, h + 5] {
                let png = try ComputeThreads.with(threads) { try PNGEncoder.encode(image, fast: true, parts: parts) }
                #expect(try ImageCodec.probe(png) == ImageHeader(format: .png, width: w, height: h, channels: channels))
                #expect(try ImageCodec.decode(png).bytes() == bytes, "\(parts) pieces on \(threads) threads")
            }
        }
    }

    @Test func clampsAndRounds() throws {
        let image = RGBImage(width: 2, height: 1, channels: 3, pixels: [-0.5, 0.5, 1.5, 0.2, 0.998, 0.001])
        let back = try ImageCodec.decode(try PNGEncoder.encode(image))
        #expect(back.bytes() == [0, 128, 255, 51, 254, 0])
    }

    @Test func decodesWhatItReencodes() throws {
        let image = try ImageCodec.decode(try Fixtures.bytes("baseline.jpg"))
        let again = try ImageCodec.decode(try PNGEncoder.encode(image))
        #expect(again.bytes() == image.bytes())
    }
}
