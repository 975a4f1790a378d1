using System.Runtime.InteropServices;

namespace Storage.Nbd.Interop;

/// <summary>
/// The few Linux calls .NET does not wrap: the effective uid, a file's type without following links, and a gathering
/// send (sendmsg) on a socket .NET keeps in blocking mode.
/// </summary>
internal static partial class LibC
{
    private const int AtFdCwd = -100;
    private const int AtSymlinkNoFollow = 0x100;
    private const uint StatxType = 0x1;
    private const int StatxModeOffset = 28;
    private const int StatxSize = 256;
    private const int FileTypeMask = 0xF000;
    private const int SocketFileType = 0xC000;

    // SOL_SOCKET / SO_PEERCRED on Linux (x86, arm, riscv); struct ucred { pid_t pid; uid_t uid; gid_t gid; }.
    public const int SolSocket = 1;
    public const int SoPeerCred = 17;

    public const int MsgNoSignal = 0x4000;
    public const int MsgMore = 0x8000;
    public const int MsgDontWait = 0x40;
    public const int EIntr = 4;
    public const int EAgain = 11;

    /// <summary>The most vectors one sendmsg takes (IOV_MAX).</summary>
    public const int MaxVectors = 1024;

    [LibraryImport("libc", EntryPoint = "geteuid")]
    public static partial uint GetEffectiveUserId();

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Statx(int directory, string path, int flags, uint mask, byte* buffer);

    [LibraryImport("libc", EntryPoint = "sendmsg", SetLastError = true)]
    public static unsafe partial nint SendMessage(int socket, MessageHeader* message, int flags);

    /// <summary>True when <paramref name="path"/> is a socket (not following a final symbolic link).</summary>
    public static unsafe bool IsSocket(string path)
    {
        byte* buffer = stackalloc byte[StatxSize];
        if (Statx(AtFdCwd, path, AtSymlinkNoFollow, StatxType, buffer) != 0)
            return false;
        ushort mode = *(ushort*)(buffer + StatxModeOffset);
        return (mode & FileTypeMask) == SocketFileType;
    }

    /// <summary>struct iovec.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public unsafe struct IoVector
    {
        public byte* Base;
        public nuint Length;
    }

    /// <summary>
    /// struct msghdr (glibc; musl on little-endian 64-bit lays out its int msg_iovlen plus padding in the same bytes).
    /// </summary>
    [StructLayout(LayoutKind.Sequential)]
    public unsafe struct MessageHeader
    {
        public void* Name;
        public uint NameLength;
        public IoVector* Vectors;
        public nuint VectorCount;
        public void* Control;
        public nuint ControlLength;
        public int Flags;
    }
}
