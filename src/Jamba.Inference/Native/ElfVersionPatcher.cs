using System.Buffers.Binary;
using System.Text;

namespace Jamba.Inference.Native;

/// <summary>
/// Reads and edits the GNU symbol-versioning sections of a 64-bit little-endian ELF shared object:
/// the versions it needs from each library (<c>.gnu.version_r</c>) and the versions a library
/// defines (<c>.gnu.version_d</c>). Used to mark a version requirement weak
/// (<c>vna_flags |= VER_FLG_WEAK</c>), which turns the loader's hard "version not found" error
/// into a warning. Knows nothing about TorchSharp.
/// </summary>
internal static class ElfVersionPatcher
{
    private const uint ShtGnuVerdef = 0x6ffffffd;
    private const uint ShtGnuVerneed = 0x6ffffffe;
    private const ushort VerFlgWeak = 0x2;

    /// <summary>One version requirement (<c>Elf64_Vernaux</c>) and where its flags live in the file.</summary>
    internal readonly record struct VersionNeed(string File, string Version, bool Weak, long FlagsOffset);

    /// <summary>Lists every version requirement of <paramref name="elf"/>.</summary>
    public static List<VersionNeed> ReadVersionNeeds(ReadOnlySpan<byte> elf)
    {
        var result = new List<VersionNeed>();
        if (!TryFindSection(elf, ShtGnuVerneed, out var off, out var size, out var strOff)) return result;
        long entry = off;
        while (entry + 16 <= off + size)
        {
            ushort cnt = U16(elf, entry + 2);
            string file = CString(elf, strOff + U32(elf, entry + 4));
            long aux = entry + U32(elf, entry + 8);
            for (int i = 0; i < cnt; i++)
            {
                ushort flags = U16(elf, aux + 4);
                string name = CString(elf, strOff + U32(elf, aux + 8));
                result.Add(new VersionNeed(file, name, (flags & VerFlgWeak) != 0, aux + 4));
                uint nextAux = U32(elf, aux + 12);
                if (nextAux == 0) break;
                aux += nextAux;
            }
            uint next = U32(elf, entry + 12);
            if (next == 0) break;
            entry += next;
        }
        return result;
    }

    /// <summary>Lists the version names that <paramref name="elf"/> defines (for a library such as libstdc++).</summary>
    public static HashSet<string> ReadVersionDefinitions(ReadOnlySpan<byte> elf)
    {
        var result = new HashSet<string>(StringComparer.Ordinal);
        if (!TryFindSection(elf, ShtGnuVerdef, out var off, out var size, out var strOff)) return result;
        long entry = off;
        while (entry + 20 <= off + size)
        {
            long aux = entry + U32(elf, entry + 12);
            result.Add(CString(elf, strOff + U32(elf, aux)));
            uint next = U32(elf, entry + 16);
            if (next == 0) break;
            entry += next;
        }
        return result;
    }

    /// <summary>Sets the weak flag on the requirement of <paramref name="version"/> from <paramref name="file"/>.</summary>
    /// <returns>Whether a matching requirement was found.</returns>
    public static bool MarkWeak(Span<byte> elf, string file, string version)
    {
        bool found = false;
        foreach (var need in ReadVersionNeeds(elf))
        {
            if (need.File != file || need.Version != version) continue;
            ushort flags = U16(elf, need.FlagsOffset);
            BinaryPrimitives.WriteUInt16LittleEndian(elf[(int)need.FlagsOffset..], (ushort)(flags | VerFlgWeak));
            found = true;
        }
        return found;
    }

    /// <summary>Finds the section of <paramref name="type"/> and the string table it links to.</summary>
    private static bool TryFindSection(ReadOnlySpan<byte> elf, uint type, out long offset, out long size, out long strtabOffset)
    {
        offset = size = strtabOffset = 0;
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
            throw new InvalidDataException("Not an ELF file.");
        if (elf[4] != 2 || elf[5] != 1)
            throw new InvalidDataException("Only 64-bit little-endian ELF files are supported.");
        long shoff = (long)U64(elf, 0x28);
        int shentsize = U16(elf, 0x3A);
        int shnum = U16(elf, 0x3C);
        if (shoff <= 0 || shentsize < 64 || shoff + (long)shnum * shentsize > elf.Length)
            throw new InvalidDataException("ELF section header table lies outside the file.");
        for (int i = 0; i < shnum; i++)
        {
            long sh = shoff + (long)i * shentsize;
            if (U32(elf, sh + 4) != type) continue;
            offset = (long)U64(elf, sh + 0x18);
            size = (long)U64(elf, sh + 0x20);
            uint link = U32(elf, sh + 0x28);
            long linked = shoff + (long)link * shentsize;
            strtabOffset = (long)U64(elf, linked + 0x18);
            if (offset + size > elf.Length) throw new InvalidDataException("ELF version section lies outside the file.");
            return true;
        }
        return false;
    }

    private static ushort U16(ReadOnlySpan<byte> b, long at) => BinaryPrimitives.ReadUInt16LittleEndian(b[(int)at..]);
    private static uint U32(ReadOnlySpan<byte> b, long at) => BinaryPrimitives.ReadUInt32LittleEndian(b[(int)at..]);
    private static ulong U64(ReadOnlySpan<byte> b, long at) => BinaryPrimitives.ReadUInt64LittleEndian(b[(int)at..]);

    private static string CString(ReadOnlySpan<byte> b, long at)
    {
        var rest = b[(int)at..];
        int end = rest.IndexOf((byte)0);
        return Encoding.ASCII.GetString(end < 0 ? rest : rest[..end]);
    }
}
