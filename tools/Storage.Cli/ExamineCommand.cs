using System.CommandLine;
using System.Text.Json;
using Spectre.Console;
using Storage.CommandLine;
using Storage.Raid;

namespace Storage.Cli;

/// <summary><c>storage array examine --json</c>: what one disk's label says.</summary>
internal sealed record ExamineDocument(
    string Path,
    string Content,
    string Description,
    Guid? ArrayId,
    string? ArrayName,
    Guid? MemberId,
    int? Role,
    string? RoleState,
    ulong? Events,
    bool? Clean,
    string? Geometry,
    long? DataOffset,
    long? MemberDataSize,
    long? LabelAreaSize,
    long? JournalOffset,
    int? JournalSlots,
    Guid? JournalDevice,
    long? BitmapOffset,
    int? BitmapBytes,
    long? BitmapRegionBytes);

/// <summary>
/// <c>storage array examine DISK</c>, as <c>mdadm --examine</c>: reads one disk's label and superblock and prints the
/// array it belongs to, its role and state, events, where data starts on it and the geometry; changes nothing.
/// </summary>
internal static class ExamineCommand
{
    public static Command Build()
    {
        var disk = new Argument<string>("DISK") { Description = "a member disk (file or block device)" };
        var json = CliOptions.Flag("--json", "print one JSON document");
        var command = new Command("examine", "print one disk's superblock: array, role, state, events, data offset; change nothing");
        command.Arguments.Add(disk);
        command.Options.Add(json);
        command.SetAction(p => ExamineAsync(Path.GetFullPath(p.GetValue(disk)!), p.GetValue(json), p.Out()).GetAwaiter().GetResult());
        return command;
    }

    private static async Task<int> ExamineAsync(string path, bool json, TextWriter output)
    {
        using var device = Disks.Open(path, readOnly: true);
        var label = await MemberLabel.ReadAsync(device).ConfigureAwait(false);
        var s = label.Superblock;
        RoleRecord? role = s is not null && s.Role >= 0 && s.Role < s.Roles.Count ? s.Roles[s.Role] : null;
        string? roleState = s is null ? null : s.Role == Superblock.JournalRole ? "journal" : role?.State.ToString().ToLowerInvariant() ?? "spare";
        var document = new ExamineDocument(path, label.Content.ToString().ToLowerInvariant(), label.Description, s?.ArrayId, s?.Name, s?.MemberId,
            s?.Role, roleState, s?.Events, s?.Clean, s?.Geometry.ToString(),
            s?.Geometry.DataOffset, s?.Geometry.MemberDataSize, s is null ? null : RaidArray.LabelAreaSize,
            s is null || s.JournalSlots == 0 ? null : s.JournalOffset, s?.JournalSlots, s is null || s.JournalDevice == Guid.Empty ? null : s.JournalDevice,
            s is null || s.BitmapBytes == 0 ? null : s.BitmapOffset, s?.BitmapBytes, s is null || s.BitmapBytes == 0 ? null : s.BitmapRegionStripes * s.Geometry.StripeDataSize);
        if (json)
        {
            output.WriteLine(JsonSerializer.Serialize(document, CliJson.Default.ExamineDocument));
            return s is null ? Cli.Failed : Cli.Ok;
        }
        if (s is null)
        {
            output.WriteLine($"{path}: no array superblock ({label.Description})");
            return Cli.Failed;
        }
        var table = Tables.Create("field", "value");
        table.AddRow(Tables.Cell("disk"), Tables.Cell(path));
        table.AddRow(Tables.Cell("array"), Tables.Cell($"'{s.Name}' {s.ArrayId}"));
        table.AddRow(Tables.Cell("geometry"), Tables.Cell(s.Geometry));
        table.AddRow(Tables.Cell("member"), Tables.Cell(s.MemberId));
        table.AddRow(Tables.Cell("role"), Tables.Cell(s.Role == Superblock.JournalRole ? "journal device" : s.Role < 0 ? "spare" : $"{s.Role} ({document.RoleState})"));
        table.AddRow(Tables.Cell("events"), Tables.Cell(s.Events));
        table.AddRow(Tables.Cell("state"), Tables.Cell(s.Clean ? "stopped cleanly" : "not stopped cleanly (the journal is replayed at assembly)"));
        table.AddRow(Tables.Cell("data offset"), Tables.Cell($"{s.Geometry.DataOffset} bytes ({s.Geometry.DataOffset / 512} sectors)"));
        table.AddRow(Tables.Cell("data size"), Tables.Cell($"{s.Geometry.MemberDataSize} bytes per member"));
        table.AddRow(Tables.Cell("superblocks"), Tables.Cell($"two copies in the first {RaidArray.LabelAreaSize / 1024} KiB"));
        table.AddRow(Tables.Cell("bitmap"), Tables.Cell(s.BitmapBytes == 0 ? "none" : $"{s.BitmapBytes} bytes from byte {s.BitmapOffset}, one bit per {s.BitmapRegionStripes * s.Geometry.StripeDataSize >> 20} MiB of the array"));
        table.AddRow(Tables.Cell("journal"), Tables.Cell(s.JournalSlots == 0 ? "off"
            : s.JournalDevice == Guid.Empty ? $"{s.JournalSlots} stripe slots from byte {s.JournalOffset} up to the data offset"
            : s.Role == Superblock.JournalRole ? $"{s.JournalSlots} stripe slots of {s.Geometry.MemberCount} parts from byte {s.JournalOffset} (this device)"
            : $"on the separate journal device {s.JournalDevice} ({s.JournalSlots} stripe slots); give it with the disks at assembly"));
        Tables.Write(output, table);
        return Cli.Ok;
    }
}
