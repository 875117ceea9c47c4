import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An exclusive lock on `<data-dir>/mimserve.lock`, held for as long as the server runs, so a
/// second server on the same data directory exits at start instead of training the same jobs.
/// flock(2) locks belong to the open file: the kernel drops them when the process dies, even by
/// SIGKILL, so a crash never leaves a stale lock behind. The file holds the holder's pid.
final class DataDirLock: Sendable {
    private let fd: Int32

    init(directory: URL) throws {
        let path = directory.appendingPathComponent("mimserve.lock").path
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw StartupError(description: "data-dir: cannot open \(path): \(String(cString: strerror(errno)))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            var buffer = [UInt8](repeating: 0, count: 32)
            let n = pread(fd, &buffer, buffer.count, 0)
            let holder = n > 0 ? String(decoding: buffer.prefix(n), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : "unknown"
            close(fd)
            throw StartupError(description: "data-dir: \(directory.path) is in use by another mimserve (pid \(holder)); stop it or choose another --data-dir")
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pwrite(fd, pid, pid.count, 0)
        self.fd = fd
    }

    deinit { close(fd) }
}
