using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;

namespace Storage.Raid.Tests;

public class LayoutTests
{
    public static IEnumerable<TheoryDataRow<RaidLevel, int, int>> Shapes()
    {
        yield return new(RaidLevel.Raid0, 3, 0);
        yield return new(RaidLevel.Raid1, 3, 2);
        yield return new(RaidLevel.Raid5, 4, 1);
        yield return new(RaidLevel.Raid6, 6, 2);
        yield return new(RaidLevel.ReedSolomon, 7, 3);
    }

    [Property(MaxTest = 200)]
    public Property Every_array_byte_maps_to_one_member_byte_and_back()
    {
        var shapes = from level in Gen.Elements(RaidLevel.Raid0, RaidLevel.Raid1, RaidLevel.Raid5, RaidLevel.Raid6, RaidLevel.ReedSolomon)
                     from members in Gen.Choose(ArrayGeometry.MinMembers(level, 1) + (level == RaidLevel.ReedSolomon ? 1 : 0), 12)
                     from parity in Gen.Choose(1, members - 1)
                     from chunkLog in Gen.Choose(12, 14)
                     from stripes in Gen.Choose(1, 9)
                     select new ArrayGeometry(level, members, ArrayGeometry.ParityFor(level, members, parity), 1 << chunkLog, 1 << 20, (long)stripes << chunkLog);
        return Prop.ForAll(shapes.ToArbitrary(), geometry =>
        {
            var layout = new StripeLayout(geometry);
            var seen = new HashSet<(int Member, long Offset)>();
            for (long stripe = 0; stripe < geometry.StripeCount; stripe++)
            {
                var members = new HashSet<int>();
                for (int row = 0; row < geometry.MemberCount; row++)
                {
                    int member = layout.MemberOf(stripe, row);
                    if (member < 0 || member >= geometry.MemberCount || !members.Add(member) || layout.RowOf(stripe, member) != row)
                        return false;
                }
            }
            // Sample array sectors: each lands on a distinct (member, offset) of a data row.
            for (long offset = 0; offset < geometry.Capacity; offset += 4096)
            {
                var (stripe, index, inChunk) = layout.Locate(offset);
                if (index >= geometry.DataCount || !seen.Add((layout.MemberOf(stripe, index), layout.MemberOffset(stripe, inChunk))))
                    return false;
            }
            return seen.Count == geometry.Capacity / 4096;
        });
    }

    [Fact]
    public void Raid5_and_raid6_rotate_parity_like_md_left_symmetric()
    {
        var raid5 = new StripeLayout(new ArrayGeometry(RaidLevel.Raid5, 4, 1, 65536, 1 << 20, 65536 * 8));
        // md: stripe 0 = D0 D1 D2 P, stripe 1 = D1 D2 P D0, stripe 2 = D2 P D0 D1, stripe 3 = P D0 D1 D2
        int[][] expected5 = [[0, 1, 2, 3], [3, 0, 1, 2], [2, 3, 0, 1], [1, 2, 3, 0]];
        for (int stripe = 0; stripe < 4; stripe++)
            Assert.Equal(expected5[stripe], Enumerable.Range(0, 4).Select(row => raid5.MemberOf(stripe, row)).ToArray());

        var raid6 = new StripeLayout(new ArrayGeometry(RaidLevel.Raid6, 5, 2, 65536, 1 << 20, 65536 * 8));
        // md raid6 left-symmetric, 5 disks (raid5_compute_sector): stripe 0 = Q D0 D1 D2 P, stripe 1 = D0 D1 D2 P Q.
        Assert.Equal([1, 2, 3, 4, 0], Enumerable.Range(0, 5).Select(row => raid6.MemberOf(0, row)).ToArray());
        Assert.Equal([0, 1, 2, 3, 4], Enumerable.Range(0, 5).Select(row => raid6.MemberOf(1, row)).ToArray());
    }

    [Theory]
    [InlineData(RaidLevel.Raid5, 2, 1, 65536, "RAID-5 needs 3 to 64 members")]
    [InlineData(RaidLevel.Raid6, 6, 2, 3000, "power of two")]
    [InlineData(RaidLevel.ReedSolomon, 5, 5, 65536, "needs 6 to 64 members")]
    public void Bad_geometry_says_what_is_wrong(RaidLevel level, int members, int parity, int chunk, string message)
    {
        var e = Assert.Throws<ArgumentException>(() => new ArrayGeometry(level, members, parity, chunk, 1 << 20, 1 << 20));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }
}
