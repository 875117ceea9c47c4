/// A POSIX ustar archive of regular files, written in memory: what the checkpoint export route
/// serves (`application/x-tar`). Names are at most 100 bytes (no prefix field needed), sizes
/// below 8 GiB (11 octal digits); every file is mode 0644, owned by uid/gid 0, with `mtime`.
struct TarArchive {
    private(set) var bytes: [UInt8] = []
    let mtime: Int

    init(mtime: Int) { self.mtime = mtime }

    /// Appends one regular file: a 512-byte header, the data, zeros to the next 512-byte boundary.
    mutating func add(name: String, contents: [UInt8]) {
        let utf8 = Array(name.utf8)
        precondition(!utf8.isEmpty && utf8.count <= 100, "tar member name '\(name)' must be 1…100 bytes")
        precondition(contents.count < 1 << 33, "tar member '\(name)' is \(contents.count) bytes, over ustar's 8 GiB")
        var header = [UInt8](repeating: 0, count: 512)
        func put(_ field: [UInt8], at offset: Int) { header.replaceSubrange(offset..<(offset + field.count), with: field) }
        /// `width − 1` octal digits, zero-padded, then NUL.
        func octal(_ value: Int, width: Int) -> [UInt8] {
            let digits = String(value, radix: 8)
            return Array((String(repeating: "0", count: width - 1 - digits.count) + digits).utf8) + [0]
        }
        put(utf8, at: 0)                              // name
        put(octal(0o644, width: 8), at: 100)          // mode
        put(octal(0, width: 8), at: 108)              // uid
        put(octal(0, width: 8), at: 116)              // gid
        put(octal(contents.count, width: 12), at: 124) // size
        put(octal(mtime, width: 12), at: 136)         // mtime
        put(Array("        ".utf8), at: 148)          // checksum, as spaces while summing
        header[156] = UInt8(ascii: "0")               // typeflag: regular file
        put(Array("ustar".utf8) + [0], at: 257)       // magic
        put(Array("00".utf8), at: 263)                // version
        put(Array("root".utf8), at: 265)              // uname
        put(Array("root".utf8), at: 297)              // gname
        let sum = header.reduce(0) { $0 + Int($1) }
        put(octal(sum, width: 7) + [UInt8(ascii: " ")], at: 148)  // six digits, NUL, space
        bytes += header
        bytes += contents
        bytes += [UInt8](repeating: 0, count: (512 - contents.count % 512) % 512)
    }

    /// The archive with its end marker: two zero blocks.
    func finished() -> [UInt8] { bytes + [UInt8](repeating: 0, count: 1024) }
}
