using System.Text.Json;
using System.Text.Json.Serialization;

namespace Storage.Volumes;

/// <summary>
/// A volume across pools as the catalogue (the metadata service) holds it, under <see cref="Key"/>: its size, the
/// segment size, and for each segment the pools holding a copy. Each copy is a thin volume named
/// <see cref="SegmentName"/> in its pool; the data and its block map live there.
/// </summary>
/// <param name="Name">The volume's name.</param>
/// <param name="SizeBytes">Its size.</param>
/// <param name="SegmentBytes">Bytes per segment (the last may be shorter).</param>
/// <param name="Segments">For segment i, the pools holding it (one, or two for a mirror).</param>
public sealed record SpannedVolume(string Name, long SizeBytes, long SegmentBytes, IReadOnlyList<string[]> Segments)
{
    /// <summary>The consistency group the volume belongs to (snapshotted together by name), or null.</summary>
    public string? Group { get; init; }

    /// <summary>How its segments were placed (new ones on growth are placed the same way), or null (round-robin).</summary>
    public PlacementPolicy? Policy { get; init; }

    /// <summary>How reads of mirrored segments choose a copy when it is served, or null (least queue depth).</summary>
    public ReadPolicy? Reads { get; init; }

    /// <summary>
    /// The node that serves it over NBD (and holds its writes for a group snapshot's cut): the node it was created on,
    /// or null in records from before nodes were named (any node serves it).
    /// </summary>
    public string? Node { get; init; }

    /// <summary>The pools its segments may go to (null: any pool).</summary>
    public IReadOnlyList<string>? Pools { get; init; }

    /// <summary>
    /// A segment move in progress, or null: <see cref="SegmentMove.To"/> is one of the segment's copies already (every
    /// write goes to it) but is not read until it is filled; the move then drops <see cref="SegmentMove.From"/>.
    /// </summary>
    public SegmentMove? Move { get; init; }

    /// <summary>
    /// Copies of mirrored segments that missed writes (their pool failed or could not be reached while the volume was
    /// served from the other copy), or null: such a copy is neither read nor written until a resync fills it again
    /// (<see cref="StaleCopy.Filling"/>: written, not read), and then leaves this list.
    /// </summary>
    public IReadOnlyList<StaleCopy>? Stale { get; init; }

    /// <summary>Whether copy <paramref name="pool"/> of segment <paramref name="index"/> may be read (false while a move or resync fills it, or while it is stale).</summary>
    public bool Readable(int index, string pool) => (Move is not { } m || m.Segment != index || m.To != pool) && StaleEntry(index, pool) is null;

    /// <summary>Whether copy <paramref name="pool"/> of segment <paramref name="index"/> gets the volume's writes (false while it is stale and not being filled).</summary>
    public bool Written(int index, string pool) => StaleEntry(index, pool) is not { Filling: false };

    /// <summary>The entry of <see cref="Stale"/> for that copy, or null.</summary>
    public StaleCopy? StaleEntry(int index, string pool) => Stale?.FirstOrDefault(s => s.Segment == index && s.Pool == pool);

    /// <summary><paramref name="stale"/> in the order records keep it (by segment, then pool), or null when empty.</summary>
    public static IReadOnlyList<StaleCopy>? InOrder(IEnumerable<StaleCopy> stale)
    {
        StaleCopy[] ordered = [.. stale.OrderBy(s => s.Segment).ThenBy(s => s.Pool, StringComparer.Ordinal)];
        return ordered.Length == 0 ? null : ordered;
    }

    /// <summary>Copies of each segment (one, or two for a mirror), not counting a copy a move is filling.</summary>
    public int Copies => Segments.Count == 0 ? 1 : Segments[0].Length - (Move is { Segment: 0 } ? 1 : 0);

    /// <summary>Catalogue key of volume <paramref name="name"/>.</summary>
    public static string Key(string name) => "spanned/" + name;

    /// <summary>Name of segment <paramref name="index"/> of volume <paramref name="volume"/> inside a pool.</summary>
    public static string SegmentName(string volume, int index) => $"{volume}.{index:D6}";

    /// <summary>Bytes of segment <paramref name="index"/>.</summary>
    public long SegmentSize(int index) => Math.Min(SegmentBytes, SizeBytes - (long)index * SegmentBytes);

    /// <summary>The stored form.</summary>
    public byte[] Encode() => JsonSerializer.SerializeToUtf8Bytes(this, VolumesJson.Default.SpannedVolume);

    /// <summary>Reads what <see cref="Encode"/> wrote.</summary>
    /// <exception cref="JsonException">Not a spanned volume record.</exception>
    public static SpannedVolume Decode(ReadOnlySpan<byte> data)
        => JsonSerializer.Deserialize(data, VolumesJson.Default.SpannedVolume) ?? throw new JsonException("An empty volume record.");
}

/// <summary>
/// The copy of segment <paramref name="Segment"/> on pool <paramref name="Pool"/>, which missed writes; while
/// <paramref name="Filling"/>, a resync is copying the segment into it (it gets every write, and is read once full).
/// </summary>
public sealed record StaleCopy(int Segment, string Pool, bool Filling = false);

/// <summary>Segment <paramref name="Segment"/> of a volume moving from pool <paramref name="From"/> to pool <paramref name="To"/>.</summary>
public sealed record SegmentMove(int Segment, string From, string To);

/// <summary>A snapshot of a <see cref="SpannedVolume"/> as the catalogue holds it: taken at one cut with the volumes of its group.</summary>
/// <param name="Volume">The volume.</param>
/// <param name="Name">The snapshot's name (the same on every segment, in every pool).</param>
/// <param name="Group">Every volume snapshotted at the same cut (this one included).</param>
/// <param name="Time">When, in Unix seconds.</param>
public sealed record SpannedSnapshot(string Volume, string Name, IReadOnlyList<string> Group, long Time)
{
    /// <summary>The volume's size when taken (0 in records written before it was kept: the volume's size then).</summary>
    public long SizeBytes { get; init; }

    /// <summary>Catalogue key of snapshot <paramref name="name"/> of volume <paramref name="volume"/>.</summary>
    public static string Key(string volume, string name) => $"spanned-snapshots/{volume}/{name}";

    /// <summary>The stored form.</summary>
    public byte[] Encode() => JsonSerializer.SerializeToUtf8Bytes(this, VolumesJson.Default.SpannedSnapshot);

    /// <summary>Reads what <see cref="Encode"/> wrote.</summary>
    /// <exception cref="JsonException">Not a snapshot record.</exception>
    public static SpannedSnapshot Decode(ReadOnlySpan<byte> data)
        => JsonSerializer.Deserialize(data, VolumesJson.Default.SpannedSnapshot) ?? throw new JsonException("An empty snapshot record.");
}

[JsonSerializable(typeof(SpannedVolume))]
[JsonSerializable(typeof(SpannedSnapshot))]
internal sealed partial class VolumesJson : JsonSerializerContext;
