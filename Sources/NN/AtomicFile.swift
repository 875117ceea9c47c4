#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one way MIMServe replaces a file (checkpoints, weights files, exports): the bytes go to a
/// temporary file beside the target and are fsynced, the rename replaces the target, and the
/// folder is fsynced so the rename itself survives a crash. Readers, and a crash at any point, see
/// the old file or the new one, never a torn write. The temporary name is the writer's own
/// (`.<name>.<pid>.<random>.tmp`): two writers of one path (two processes sharing a checkpoint
/// folder) each rename a whole file, and the last rename wins.
public enum AtomicFile {
    public static func write(_ bytes: [UInt8], to path: String) throws(AtomicFileError) {
        let slash = path.lastIndex(of: "/")
        let folder = slash.map { String(path[...$0]) } ?? ""
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        let temporary = "\(folder).\(name).\(getpid()).\(UInt32.random(in: 0...UInt32.max)).tmp"
        do throws(AtomicFileError) {
            try writeAndSync(bytes, to: temporary, reportedAs: path)
            guard rename(temporary, path) == 0 else { throw AtomicFileError(operation: "rename to", path: path, code: errno) }
        } catch {
            unlink(temporary)
            throw error
        }
        let directory = path.lastIndex(of: "/").map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        let fd = open(directory, O_RDONLY)
        guard fd >= 0 else { throw AtomicFileError(operation: "open", path: directory, code: errno) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw AtomicFileError(operation: "fsync", path: directory, code: errno) }
    }
}

/// A system call of `AtomicFile.write` failed: which, on what, and its errno.
public struct AtomicFileError: Error, Equatable, CustomStringConvertible {
    public let operation: String
    public let path: String
    public let code: Int32

    public var description: String { "\(operation) \(path): \(String(cString: strerror(code)))" }
}

/// Errors name the target (`reportedAs`): the temporary name means nothing to the reader.
private func writeAndSync(_ bytes: [UInt8], to temporary: String, reportedAs path: String) throws(AtomicFileError) {
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw AtomicFileError(operation: "open", path: path, code: errno) }
    defer { close(fd) }
    var written = 0
    while written < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, $0.count - written) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { throw AtomicFileError(operation: "write", path: path, code: errno) }
        written += n
    }
    guard fsync(fd) == 0 else { throw AtomicFileError(operation: "fsync", path: path, code: errno) }
}
