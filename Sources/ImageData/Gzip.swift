import CZlib
import Foundation

/// gzip decompression with zlib (window bits 15 + 32: zlib picks gzip or zlib framing from
/// the header). Concatenated gzip members are read in turn, as `gunzip` does.
enum Gzip {
    enum Failure: Error, CustomStringConvertible {
        case zlib(String)
        var description: String { if case .zlib(let m) = self { m } else { "" } }
    }

    static func decompress(_ input: [UInt8]) throws(Failure) -> [UInt8] {
        var stream = z_stream()
        guard inflateInit2_(&stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw .zlib("inflateInit2 failed")
        }
        defer { inflateEnd(&stream) }
        var output: [UInt8] = []
        output.reserveCapacity(input.count * 4)
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        let result: Int32 = input.withUnsafeBufferPointer { inBuf in
            stream.next_in = UnsafeMutablePointer(mutating: inBuf.baseAddress)
            stream.avail_in = UInt32(inBuf.count)
            while true {
                let status = chunk.withUnsafeMutableBufferPointer { out -> Int32 in
                    stream.next_out = out.baseAddress
                    stream.avail_out = UInt32(out.count)
                    return inflate(&stream, Z_NO_FLUSH)
                }
                output.append(contentsOf: chunk[0..<(chunk.count - Int(stream.avail_out))])
                switch status {
                case Z_STREAM_END:
                    if stream.avail_in == 0 { return Z_STREAM_END }
                    if inflateReset(&stream) != Z_OK { return Z_DATA_ERROR }  // next gzip member
                case Z_OK: continue
                case Z_BUF_ERROR: return stream.avail_in == 0 ? Z_BUF_ERROR : Z_DATA_ERROR
                default: return status
                }
            }
        }
        switch result {
        case Z_STREAM_END: return output
        case Z_BUF_ERROR: throw .zlib("the gzip stream ends early (truncated file)")
        default:
            let message = stream.msg.map { String(cString: $0) } ?? "error \(result)"
            throw .zlib("corrupt gzip data: \(message)")
        }
    }
}
