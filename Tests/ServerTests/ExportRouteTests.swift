import Foundation
import Testing
@testable import Server
import TestSupport

/// `GET /v1/jobs/{id}/checkpoints/{step}/export?format=`: a tar of the files `mimserve export-hf`
/// writes, unpacked here with the system's tar; bad formats and methods a format cannot hold are
/// 422s naming `format`; a missing job or step is 404, a vanished file 410.
@Suite("HTTP checkpoint export", .serialized) struct ExportRouteTests {
    /// The tensor names in a safetensors file's header.
    static func tensorNames(_ data: Data) throws -> Set<String> {
        let bytes = [UInt8](data)
        let length = bytes[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let header = try #require(try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + length)])) as? [String: Any])
        return Set(header.keys).subtracting(["__metadata__"])
    }

    /// The archive unpacked by /usr/bin/tar: relative path → contents.
    static func untar(_ archive: Data) throws -> [String: Data] {
        let dir = Scratch.url("export-tar")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("a.tar")
        try archive.write(to: file)
        let tar = Process()
        tar.executableURL = URL(fileURLWithPath: "/usr/bin/tar")
        tar.arguments = ["-xf", file.path, "-C", dir.path]
        try tar.run()
        tar.waitUntilExit()
        #expect(tar.terminationStatus == 0)
        var out: [String: Data] = [:]
        let root = dir.path + "/"
        for case let path as String in FileManager.default.enumerator(atPath: dir.path)! where path != "a.tar" {
            var isDirectory: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: root + path, isDirectory: &isDirectory)
            if !isDirectory.boolValue { out[path] = try Data(contentsOf: URL(fileURLWithPath: root + path)) }
        }
        return out
    }

    /// `mimserve export-hf ARGS`: exit status and stdout + stderr.
    static func exportHF(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = MIMServeProcess.executable
        process.arguments = ["export-hf"] + arguments
        process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("MIMSERVE_") }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Padding edge cases: an empty member, one of exactly one block, one a byte over.
    @Test func tarArchiveUnpacks() throws {
        var tar = TarArchive(mtime: 1_700_000_000)
        let members: [(String, [UInt8])] = [("d/empty", []), ("d/block", [UInt8](repeating: 7, count: 512)),
                                            ("d/over", (0..<513).map { UInt8($0 % 251) })]
        for (name, bytes) in members { tar.add(name: name, contents: bytes) }
        let archive = tar.finished()
        #expect(archive.count % 512 == 0)
        let files = try Self.untar(Data(archive))
        #expect(files.count == 3)
        for (name, bytes) in members { #expect(files[name] == Data(bytes), "\(name)") }
    }

    @Test func exportsCheckpointsAsTar() async throws {
        let server = try await LiveServer.start()
        defer { Task { await server.stop() } }
        let mae = try await server.submit(steps: 2)
        let simmim = try await server.submit("simmim", steps: 2)
        let convmae = try await server.submit("convmae", steps: 2)
        for id in [mae, simmim, convmae] { _ = try await server.waitFor(id, states: ["succeeded"]) }

        // MAE for timm: the encoder alone, under timm's names.
        let timm = try await server.get("/v1/jobs/\(mae)/checkpoints/2/export?format=timm")
        #expect(timm.status == 200)
        #expect(timm.headers["content-type"] == "application/x-tar")
        #expect(timm.headers["content-disposition"] == "attachment; filename=\"\(mae)-2-timm.tar\"")
        let files = try Self.untar(timm.body)
        #expect(Set(files.keys) == ["\(mae)-2-timm/config.json", "\(mae)-2-timm/model.safetensors"])
        let config = try #require(try JSONSerialization.jsonObject(with: files["\(mae)-2-timm/config.json"] ?? Data()) as? [String: Any])
        #expect(config["architecture"] as? String == "vit_base_patch16_224")
        let names = try Self.tensorNames(try #require(files["\(mae)-2-timm/model.safetensors"]))
        #expect(names.contains("pos_embed") && names.contains("blocks.1.attn.qkv.weight") && names.contains("norm.bias"))
        #expect(!names.contains { $0.hasPrefix("decoder") || $0 == "mask_token" })

        // MAE and SimMIM for transformers: the whole model.
        for (id, probe) in [(mae, "vit.encoder.layer.0.attention.attention.query.weight"),
                            (simmim, "swin.encoder.layers.0.blocks.0.attention.self.query.weight")] {
            let hf = try await server.get("/v1/jobs/\(id)/checkpoints/2/export?format=hf")
            #expect(hf.status == 200)
            let files = try Self.untar(hf.body)
            let config = try #require(try JSONSerialization.jsonObject(with: files["\(id)-2-hf/config.json"] ?? Data()) as? [String: Any])
            #expect((config["architectures"] as? [String])?.count == 1)
            #expect(try Self.tensorNames(try #require(files["\(id)-2-hf/model.safetensors"])).contains(probe))
        }

        // Bad input: 422 naming format; a method timm cannot hold: 422 naming format with the reason.
        #expect(try await server.get("/v1/jobs/\(mae)/checkpoints/2/export?format=onnx").errorFields == ["format"])
        #expect(try await server.get("/v1/jobs/\(mae)/checkpoints/2/export").errorFields == ["format"])
        let refused = try await server.get("/v1/jobs/\(convmae)/checkpoints/2/export?format=timm")
        #expect(refused.status == 422 && refused.isProblem && refused.errorFields == ["format"])
        #expect(refused.text.contains("hybrid"))
        #expect(try await server.get("/v1/jobs/\(convmae)/checkpoints/2/export?format=hf").errorFields == ["format"])

        // `mimserve export-hf --job` finds the same checkpoint through the database and writes the same files.
        let out = Scratch.url("export-cli")
        defer { try? FileManager.default.removeItem(at: out) }
        let cli = try Self.exportHF(["--job", mae, "--format", "timm", "--data-dir", server.dataDir.path, "-o", out.path])
        #expect(cli.status == 0, "\(cli.output)")
        for name in ["config.json", "model.safetensors"] {
            #expect(try Data(contentsOf: out.appendingPathComponent(name)) == files["\(mae)-2-timm/\(name)"], "\(name)")
        }
        let noStep = try Self.exportHF(["--job", mae, "--step", "7", "--data-dir", server.dataDir.path, "-o", out.path])
        #expect(noStep.status != 0 && noStep.output.contains("job \(mae) has no checkpoint at step 7"))
        let noJob = try Self.exportHF(["--job", "nope", "--data-dir", server.dataDir.path, "-o", out.path])
        #expect(noJob.status != 0 && noJob.output.contains("no job nope"))
        let refusedCLI = try Self.exportHF(["--job", convmae, "--format", "timm", "--data-dir", server.dataDir.path, "-o", out.path])
        #expect(refusedCLI.status != 0 && refusedCLI.output.contains("hybrid"))

        // Missing job or step: 404. A file gone: 410, without its path.
        #expect(try await server.get("/v1/jobs/nope/checkpoints/2/export?format=hf").status == 404)
        #expect(try await server.get("/v1/jobs/\(mae)/checkpoints/7/export?format=hf").status == 404)
        let folder = server.dataDir.appendingPathComponent("checkpoints").appendingPathComponent(mae)
        for name in try FileManager.default.contentsOfDirectory(atPath: folder.path) {
            try FileManager.default.removeItem(at: folder.appendingPathComponent(name))
        }
        let gone = try await server.get("/v1/jobs/\(mae)/checkpoints/2/export?format=timm")
        #expect(gone.status == 410 && gone.isProblem)
        #expect(!gone.text.contains(server.dataDir.path))
    }
}
