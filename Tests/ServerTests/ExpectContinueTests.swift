import Foundation
import TestSupport
import ImageData
import Testing
@testable import Server

/// curl itself, uploading 5 MB: it asks `Expect: 100-continue` and must get `100 Continue`
/// (without it curl waits its expect timeout, a second by default, before sending the body).
@Suite("HTTP Expect: 100-continue", .serialized) struct ExpectContinueTests {
    @Test func curlUploadsAFiveMegabyteImageWithoutWaiting() async throws {
        let curl = try #require(["/usr/bin/curl", "/bin/curl"].first { FileManager.default.isExecutableFile(atPath: $0) }, "curl is missing")
        let server = try await LiveServer.start()
        defer { Task { await server.stop() } }
        let id = try await server.submit(steps: 1)
        _ = try await server.waitFor(id, states: ["succeeded"])
        // Noise does not compress: 1300² RGB pixels make a PNG of about 5 MB.
        let file = server.dataDir.appendingPathComponent("upload.png")
        try noisePNG(side: 1300).write(to: file)
        let size = try #require(try FileManager.default.attributesOfItem(atPath: file.path)[.size] as? Int)
        #expect(size > 5_000_000)
        // A long expect timeout: without the interim answer the run fails (no 100 line), whatever the machine's speed.
        let (status, verbose) = try await offThread { () throws -> (String, String) in
            let p = Process()
            p.executableURL = URL(fileURLWithPath: curl)
            p.arguments = ["-sS", "-v", "--expect100-timeout", "60", "-o", "/dev/null", "-w", "%{http_code}",
                           "-H", "Content-Type: image/png", "--data-binary", "@\(file.path)",
                           server.base.appendingPathComponent("v1/jobs/\(id)/features").absoluteString]
            let out = Pipe(), err = Pipe()
            p.standardOutput = out
            p.standardError = err
            try p.run()
            let stderr = err.fileHandleForReading.readDataToEndOfFile()
            let stdout = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return (String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
        }
        #expect(verbose.contains("> Expect: 100-continue"), "curl did not ask: \(verbose.suffix(600))")
        #expect(verbose.contains("< HTTP/1.1 100 Continue"), "no interim answer: \(verbose.suffix(600))")
        #expect(status == "200", "\(verbose.suffix(600))")
    }

    func noisePNG(side: Int) throws -> Data {
        var g = SystemRandomNumberGenerator()
        let bytes = (0..<side * side * 3).map { _ in UInt8.random(in: 0...255, using: &g) }
        return Data(try PNGEncoder.encode(bytes: bytes, width: side, height: side, channels: 3))
    }
}
