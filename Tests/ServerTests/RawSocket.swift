import Foundation
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// A plain TCP client to 127.0.0.1 for tests that must misbehave below HTTP: trickle a head,
/// stall a body, hold a connection idle, or read an event stream line by line. Every call
/// blocks, so tests run it through `offThread`, never on Swift's cooperative pool (which the
/// in-process server needs).
final class RawSocket: @unchecked Sendable {
    let fd: Int32
    private(set) var received: [UInt8] = []

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure("socket failed: \(errno)") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard ok == 0 else {
            let e = errno
            Glibc.close(fd)
            throw Failure("connect failed: \(e)")
        }
        var timeout = timeval(tv_sec: 0, tv_usec: 50_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { Glibc.close(fd) }

    var text: String { String(decoding: received, as: UTF8.self) }

    /// False once the server has closed the connection (EPIPE / ECONNRESET).
    @discardableResult
    func send(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
    }

    /// Reads what is there for up to one receive timeout (50 ms); true when the peer has closed.
    func pump() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = recv(fd, &buffer, buffer.count, 0)
        if n > 0 { received += buffer[0..<n]; return false }
        if n == 0 { return true }
        return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR
    }

    /// Reads until the server closes the connection; false if it is still open at the deadline.
    func waitClosed(within seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if pump() { return true }
        }
        return false
    }

    /// Reads until a chunked response (an event stream) has ended: its last, empty chunk arrived
    /// or the server closed the connection. False if neither happened by the deadline.
    func waitStreamEnd(within seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if text.hasSuffix("\r\n0\r\n\r\n") { return true }
            if pump() { return true }
        }
        return false
    }

    /// Reads until `enough` holds for what was received (or the peer closes, or the deadline).
    @discardableResult
    func read(within seconds: Double, until enough: (String) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if enough(text) { return true }
            if pump() { return enough(text) }
        }
        return enough(text)
    }

    /// The body of the response read so far, de-chunked (an event stream is sent chunked).
    var body: String {
        guard let end = received.firstRange(of: Array("\r\n\r\n".utf8)) else { return "" }
        let head = String(decoding: received[..<end.lowerBound], as: UTF8.self).lowercased()
        var rest = Array(received[end.upperBound...])
        guard head.contains("transfer-encoding: chunked") else { return String(decoding: rest, as: UTF8.self) }
        var out: [UInt8] = []
        while let lineEnd = rest.firstRange(of: Array("\r\n".utf8)),
              let size = Int(String(decoding: rest[..<lineEnd.lowerBound], as: UTF8.self), radix: 16), size > 0,
              rest.count >= lineEnd.upperBound + size {
            out += rest[lineEnd.upperBound..<(lineEnd.upperBound + size)]
            rest = Array(rest[min(rest.count, lineEnd.upperBound + size + 2)...])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// One complete response with a Content-Length (the connection stays open); its status.
    func readResponse(within seconds: Double) -> Int? {
        let start = received.count
        var status: Int?
        read(within: seconds) { _ in
            let part = String(decoding: self.received[start...], as: UTF8.self)
            guard let end = part.range(of: "\r\n\r\n") else { return false }
            let head = part[..<end.lowerBound]
            status = head.split(separator: " ").dropFirst().first.flatMap { Int($0) }
            let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
            return part.utf8.count - part.utf8.distance(from: part.startIndex, to: end.upperBound) >= length
        }
        return status
    }

    /// Sends one request (adding Host unless `headers` names one) and reads its whole response;
    /// the connection is closed afterwards. Returns the status, lower-cased headers and body.
    static func exchange(port: Int, _ method: String, _ path: String, headers: [String: String] = [:], body: String = "")
        throws -> (status: Int, headers: [String: String], body: String) {
        let socket = try RawSocket(port: port)
        var head = "\(method) \(path) HTTP/1.1\r\n"
        if !headers.keys.contains(where: { $0.lowercased() == "host" }) { head += "Host: 127.0.0.1:\(port)\r\n" }
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        head += "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n"
        socket.send(head + body)
        _ = socket.waitClosed(within: 60)
        let text = socket.text
        guard let end = text.range(of: "\r\n\r\n") else { throw Failure("no response: '\(text)'") }
        let lines = text[..<end.lowerBound].split(separator: "\r\n")
        let status = lines.first.flatMap { $0.split(separator: " ").dropFirst().first }.flatMap { Int($0) } ?? 0
        var h: [String: String] = [:]
        for line in lines.dropFirst() {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2 { h[parts[0].lowercased()] = parts[1].trimmingCharacters(in: .whitespaces) }
        }
        return (status, h, String(text[end.upperBound...]))
    }
}
