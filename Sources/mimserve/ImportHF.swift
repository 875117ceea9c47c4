import ArgumentParser
import Models

/// `mimserve import-hf DIR --output FILE.safetensors`: a Hugging Face ViTMAEForPreTraining or
/// SwinForMaskedImageModeling directory to a MIMServe weights file (the format of training
/// checkpoints, without training state).
struct ImportHF: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import-hf",
        abstract: "Convert a Hugging Face ViTMAEForPreTraining (MAE) or SwinForMaskedImageModeling (SimMIM) directory into MIMServe weights.")

    @Argument(help: "Directory with config.json and model.safetensors (float32).")
    var directory: String

    @Option(name: .shortAndLong, help: "The MIMServe weights file to write (.safetensors); <checkpoint-dir>/weights/<id>.safetensors lets a job start from it with init {\"weights\": id}.")
    var output: String

    func run() throws {
        let model = try HFImport.load(directory: directory)
        try WeightsFile.write(model, to: output)
        print("wrote \(output): \(model.config.method.rawValue), \(model.parameterCount) parameters")
    }
}
