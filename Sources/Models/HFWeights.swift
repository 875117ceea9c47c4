#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NN
import TensorCore

/// What every Hugging Face mapping shares: reading a `from_pretrained` directory, and moving
/// tensors between our names and HF's, where one of ours may be several of HF's stacked by rows
/// (a fused qkv is HF's query, key and value).
enum HFWeights {
    /// `directory`'s config.json decoded as `C`, and its model.safetensors (F32).
    static func read<C: Decodable>(_ type: C.Type, directory: String) throws(HFImportError) -> (C, [String: Tensor]) {
        let configPath = directory + "/config.json"
        guard let data = FileManager.default.contents(atPath: configPath) else { throw .missingFile(configPath) }
        let config: C
        do {
            config = try JSONDecoder().decode(C.self, from: data)
        } catch DecodingError.keyNotFound(let key, _) {
            throw .missingKey(key.stringValue)
        } catch DecodingError.typeMismatch(let type, let context), DecodingError.valueNotFound(let type, let context) {
            let key = context.codingPath.map(\.stringValue).joined(separator: ".")
            if key.isEmpty { throw .malformedConfig(path: configPath, reason: "not a JSON object") }
            throw .wrongType(key: key, expected: "\(type)")
        } catch {
            throw .malformedConfig(path: configPath, reason: "\(error)")
        }
        let path = directory + "/model.safetensors"
        guard FileManager.default.fileExists(atPath: path) else { throw .missingFile(path) }
        do { return (config, try SafeTensors.read(path: path).tensors) } catch { throw .safeTensors(path: path, error) }
    }

    /// `state` under HF's names: a tensor with k names becomes k equal row blocks.
    static func export(_ state: [String: Tensor], names: (String) -> [String]) -> [String: Tensor] {
        var tensors: [String: Tensor] = [:]
        for (name, t) in state {
            let hf = names(name)
            var shape = t.shape
            shape[0] /= hf.count
            let n = t.count / hf.count
            for (k, h) in hf.enumerated() {
                tensors[h] = hf.count == 1 ? t : Tensor(Array(t.data[(k * n)..<((k + 1) * n)]), shape: shape)
            }
        }
        return tensors
    }

    /// Every tensor of `ours` (our name → its current value, for the shape) taken from `file` by
    /// HF name and checked for shape; what is taken leaves `file`, so what remains is unexpected.
    static func gather(_ ours: [String: Tensor], from file: inout [String: Tensor],
                       names: (String) -> [String]) throws(HFImportError) -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for (name, t) in ours.sorted(by: { $0.key < $1.key }) {
            let hf = names(name)
            var shape = t.shape
            shape[0] /= hf.count
            var values: [Float] = []
            for h in hf {
                guard let v = file.removeValue(forKey: h) else { throw .missingTensor(h) }
                guard v.shape == shape else { throw .shapeMismatch(h, expected: shape, found: v.shape) }
                withExtendedLifetime(v) { values += v.data }
            }
            out[name] = Tensor(values, shape: t.shape)
        }
        return out
    }
}

/// `mimserve import-hf`: the model a transformers directory holds, by its config's `model_type`.
public enum HFImport {
    public static func load(directory: String) throws(HFImportError) -> any MIMModel {
        struct Kind: Decodable {
            let modelType: String
            enum CodingKeys: String, CodingKey { case modelType = "model_type" }
        }
        let path = directory + "/config.json"
        guard let data = FileManager.default.contents(atPath: path) else { throw .missingFile(path) }
        let kind: Kind
        do { kind = try JSONDecoder().decode(Kind.self, from: data) } catch DecodingError.keyNotFound(let key, _) {
            throw .missingKey(key.stringValue)
        } catch {
            throw .malformedConfig(path: path, reason: "\(error)")
        }
        switch kind.modelType {
        case "vit_mae": return try HFViTMAE.load(directory: directory)
        case "swin": return try HFSwinSimMIM.load(directory: directory)
        default:
            throw .unsupported(key: "model_type", value: kind.modelType,
                               reason: "expected \"vit_mae\" (ViTMAEForPreTraining) or \"swin\" (SwinForMaskedImageModeling)")
        }
    }
}
