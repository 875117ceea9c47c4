import Foundation

/// An IDX array of unsigned bytes (the MNIST family's format): magic 0x0000_08_NN, where
/// 0x08 = UInt8 samples and NN = the number of dimensions; then NN big-endian UInt32
/// dimensions; then the samples, row-major. Read from a gzip file.
struct IDXFile {
    let dimensions: [Int]
    let bytes: [UInt8]  // the samples only

    init(gzipPath path: String) throws(DatasetError) {
        let compressed: [UInt8]
        do { compressed = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) } catch {
            throw .unreadable(path: path, reason: error.localizedDescription)
        }
        let raw: [UInt8]
        do { raw = try Gzip.decompress(compressed) } catch { throw .invalidIDX(path: path, reason: error.description) }
        try self.init(raw, path: path)
    }

    init(_ raw: [UInt8], path: String) throws(DatasetError) {
        guard raw.count >= 4, raw[0] == 0, raw[1] == 0 else { throw .invalidIDX(path: path, reason: "bad magic number") }
        guard raw[2] == 0x08 else { throw .invalidIDX(path: path, reason: "sample type 0x\(String(raw[2], radix: 16)) is not unsigned byte") }
        let rank = Int(raw[3])
        guard rank >= 1, raw.count >= 4 + 4 * rank else { throw .invalidIDX(path: path, reason: "header ends early") }
        let dims = (0..<rank).map { d in
            (0..<4).reduce(0) { $0 << 8 | Int(raw[4 + 4 * d + $1]) }
        }
        let header = 4 + 4 * rank
        // Each dimension may be up to 2³²−1: multiply with overflow checks (Int.max never matches).
        let expected = dims.reduce(1) { product, d in
            let (p, overflow) = product.multipliedReportingOverflow(by: d)
            return overflow ? .max : p
        }
        guard raw.count - header == expected else {
            throw .invalidIDX(path: path, reason: "dimensions \(dims) need \(expected) bytes, found \(raw.count - header)")
        }
        dimensions = dims
        bytes = Array(raw[header...])
    }
}
