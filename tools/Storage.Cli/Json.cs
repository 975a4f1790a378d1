using System.Text.Json;
using System.Text.Json.Serialization;
using Storage.Raid;
using Storage.Versioning;

namespace Storage.Cli;

/// <summary><c>storage array status --json</c> read from the superblocks: the newest array record (null when no disk has one) and every disk.</summary>
internal sealed record StatusDocument(ArraySummary? Array, IReadOnlyList<DiskRow> Disks);

internal sealed record ArraySummary(string Name, Guid Id, string Geometry, ulong Events, bool Clean, IReadOnlyList<RoleSummary> Roles);

internal sealed record RoleSummary(int Role, Guid MemberId, string State, long RebuildCheckpoint);

internal sealed record DiskRow(string Path, string Content, Guid MemberId, int Role, ulong Events, string Description);

/// <summary><c>storage array scrub --json</c>.</summary>
internal sealed record ScrubDocument(ScrubResult Scrub, ArrayStatus Array);

/// <summary><c>storage pool scrub --json</c>.</summary>
internal sealed record PoolScrubDocument(PoolScrubResult Scrub, PoolStatus Pool);

/// <summary><c>storage bench parity --json</c>.</summary>
internal sealed record BenchDocument(int ChunkBytes, string DefaultKernels, IReadOnlyList<BenchResult> Results);

internal sealed record BenchResult(string Operation, string Kernels, double GBps);

/// <summary>
/// Every document the CLI prints or keeps (run-directory records, control-socket messages), serialised by source
/// generation: camelCase names, indented for people; <see cref="Compact"/> for one-line protocol messages.
/// </summary>
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, Converters = [typeof(ExtentConverter)])]
[JsonSerializable(typeof(ArrayStatus))]
[JsonSerializable(typeof(StatusDocument))]
[JsonSerializable(typeof(ScrubDocument))]
[JsonSerializable(typeof(BenchDocument))]
[JsonSerializable(typeof(ExamineDocument))]
[JsonSerializable(typeof(PoolStatus))]
[JsonSerializable(typeof(PoolScrubDocument))]
[JsonSerializable(typeof(VolumeInfo))]
[JsonSerializable(typeof(IReadOnlyList<VolumeInfo>))]
[JsonSerializable(typeof(SnapshotInfo))]
[JsonSerializable(typeof(IReadOnlyList<SnapshotInfo>))]
[JsonSerializable(typeof(TransferResult))]
[JsonSerializable(typeof(ServerRecord))]
[JsonSerializable(typeof(MountRecord))]
[JsonSerializable(typeof(ControlRequest))]
[JsonSerializable(typeof(ControlResponse))]
internal sealed partial class CliJson : JsonSerializerContext
{
    /// <summary>The same contracts on one line (the control socket reads a message per line).</summary>
    public static CliJson Compact { get; } = new(new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.CamelCase, Converters = { new ExtentConverter() } });
}

/// <summary>A (offset, length) range as <c>{"offset": …, "length": …}</c>; tuples carry no element names at run time.</summary>
internal sealed class ExtentConverter : JsonConverter<(long Offset, long Length)>
{
    public override (long Offset, long Length) Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        long offset = 0, length = 0;
        if (reader.TokenType != JsonTokenType.StartObject)
            throw new JsonException("expected an object with offset and length");
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            string name = reader.GetString()!;
            reader.Read();
            if (name == "offset")
                offset = reader.GetInt64();
            else if (name == "length")
                length = reader.GetInt64();
            else
                reader.Skip();
        }
        return (offset, length);
    }

    public override void Write(Utf8JsonWriter writer, (long Offset, long Length) value, JsonSerializerOptions options)
    {
        writer.WriteStartObject();
        writer.WriteNumber("offset", value.Offset);
        writer.WriteNumber("length", value.Length);
        writer.WriteEndObject();
    }
}
