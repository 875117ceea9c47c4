#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Config
import NN
import TensorCore

/// The formats a model exports to: `mimserve export-hf --format` and
/// `GET /v1/jobs/{id}/checkpoints/{step}/export?format=`.
public enum ExportFormat: String, CaseIterable, Sendable {
    /// A Hugging Face transformers directory (`from_pretrained`): the whole pretraining model, or
    /// a fine-tuned classifier as `*ForImageClassification`.
    case hf
    /// The encoder alone as a timm model directory (`timm.create_model("local-dir:DIR")`).
    case timm
}

/// One file of an export: its name inside the export directory and its bytes.
public struct ExportedFile: Sendable, Equatable {
    public let name: String
    public let bytes: [UInt8]

    public init(name: String, bytes: [UInt8]) {
        self.name = name
        self.bytes = bytes
    }
}

/// Why an export was not made.
public enum ExportError: Error, Equatable, CustomStringConvertible {
    /// The format has no model that computes what this one does; `reason` says what differs.
    case unsupported(method: Method, format: ExportFormat, reason: String)
    /// Creating the output directory or writing a file failed.
    case io(operation: String, path: String, reason: String)

    public var description: String {
        switch self {
        case let .unsupported(method, format, reason): "\(method.rawValue) does not export to \(format.rawValue): \(reason)"
        case let .io(op, path, reason): "\(op) \(path): \(reason)"
        }
    }
}

/// Builds the files of an export in memory, so the command line writes them to a directory and
/// the HTTP route packs the same bytes into a tar.
public enum ModelExport {
    public static func files(_ model: any MIMModel, format: ExportFormat) throws(ExportError) -> [ExportedFile] {
        switch format {
        case .hf: try HFExport.files(model)
        case .timm: try TimmExport.files(model)
        }
    }

    /// A fine-tuned classifier: timm's model with its head, or transformers' `*ForImageClassification`.
    public static func files(_ classifier: Classifier, format: ExportFormat) throws(ExportError) -> [ExportedFile] {
        switch format {
        case .timm: try TimmExport.files(classifier)
        case .hf: try HFClassifierExport.files(classifier)
        }
    }

    /// Writes `files` into `directory`, creating it.
    public static func write(_ files: [ExportedFile], to directory: String) throws(ExportError) {
        do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw .io(operation: "create directory", path: directory, reason: "\(error)")
        }
        for file in files {
            let path = directory + "/" + file.name
            do { try AtomicFile.write(file.bytes, to: path) } catch { throw .io(operation: "write", path: path, reason: "\(error)") }
        }
    }

    /// Pretty, key-sorted JSON with a final newline: every config.json of an export.
    static func json(_ value: some Encodable) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do { return [UInt8](try encoder.encode(value)) + [UInt8(ascii: "\n")] } catch {
            preconditionFailure("an export config did not encode: \(error)")
        }
    }

    /// `model.safetensors` as transformers and timm read it (they refuse files without format "pt").
    static func safeTensors(_ tensors: [String: Tensor]) -> ExportedFile {
        ExportedFile(name: "model.safetensors", bytes: SafeTensors.encode(tensors, metadata: ["format": "pt"]))
    }
}

/// `--format hf`: the methods with a transformers counterpart (MAE: `ViTMAEForPreTraining`,
/// SimMIM: `SwinForMaskedImageModeling`).
enum HFExport {
    static func files(_ model: any MIMModel) throws(ExportError) -> [ExportedFile] {
        switch model {
        case let mae as MAE: return HFViTMAE.files(mae)
        case let simmim as SimMIM: return try HFSwinSimMIM.files(simmim)
        default:
            throw .unsupported(method: model.config.method, format: .hf, reason:
                "transformers has no model of its encoder and decoder (it has MAE's and SimMIM's); --format timm exports the encoder where timm has one")
        }
    }
}
