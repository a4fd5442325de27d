#!/usr/bin/env bash
# Every C# block of the READMEs, built and run as a new user would: a fresh console app (outside the repository, so
# none of its build settings apply) that references the packed packages and the CPU backend. Also checks that an app
# without a backend gets the library's message naming the package to add. Run from anywhere; needs the .NET SDK.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/jamba-readme.XXXXXX)"
trap 'rm -rf "$work"' EXIT
suffix="readme.$(date +%s)"
feed="$work/packages"

echo "== packing the libraries (version suffix $suffix)"
for p in Jamba.Inference Jamba.Remote Jamba.SemanticKernel Jamba.MLNet; do
  dotnet pack "$root/src/$p" -c Release -o "$feed" --version-suffix "$suffix" -p:ContinuousIntegrationBuild=true -nologo -v q
done
version="$(ls "$feed" | sed -n 's/^Jamba\.Inference\.\(.*\)\.nupkg$/\1/p')"
torch_version="$(sed -n 's/.*Include="TorchSharp-cpu" Version="\([^"]*\)".*/\1/p' "$root/Directory.Packages.props")"
cat > "$work/nuget.config" <<EOF
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <add key="jamba-local" value="$feed" />
  </packageSources>
</configuration>
EOF

# new_app DIR BACKEND(yes/no) PROGRAM_FILE
new_app() {
  local dir="$1" backend="$2" program="$3"
  mkdir -p "$dir"
  cp "$program" "$dir/Program.cs"
  cp "$work/nuget.config" "$dir/nuget.config"
  local refs="    <PackageReference Include=\"Jamba.Inference\" Version=\"$version\" />"
  if grep -q "Jamba.SemanticKernel\|Microsoft.SemanticKernel" "$program"; then
    refs="$refs
    <PackageReference Include=\"Jamba.SemanticKernel\" Version=\"$version\" />"
  fi
  if grep -q "Jamba.MLNet\|Microsoft.ML" "$program"; then
    refs="$refs
    <PackageReference Include=\"Jamba.MLNet\" Version=\"$version\" />"
  fi
  if [ "$backend" = yes ]; then
    refs="$refs
    <PackageReference Include=\"TorchSharp-cpu\" Version=\"$torch_version\" />"
  fi
  cat > "$dir/App.csproj" <<EOF
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <OutputType>Exe</OutputType>
    <TargetFramework>net10.0</TargetFramework>
    <ImplicitUsings>enable</ImplicitUsings>
    <Nullable>enable</Nullable>
    <TreatWarningsAsErrors>false</TreatWarningsAsErrors>
  </PropertyGroup>
  <ItemGroup>
$refs
  </ItemGroup>
</Project>
EOF
  dotnet build "$dir" -c Release -nologo -v q -o "$dir/out" > "$dir/build.log" 2>&1 || { cat "$dir/build.log"; return 1; }
}

failures=0
n=0
mkdir -p "$work/blocks"
for readme in "$root/README.md" "$root"/samples/*/README.md "$root"/src/*/README.md; do
  rel="${readme#"$root"/}"
  # Split the file's ```csharp blocks into block-N.cs files.
  awk -v out="$work/blocks" -v name="$(echo "$rel" | tr '/.' '__')" '
    /^```csharp[[:space:]]*$/ { inside = 1; k++; file = out "/" name "-" k ".cs"; next }
    /^```/ && inside { inside = 0; close(file); next }
    inside { print > file }
  ' "$readme"
done
for block in "$work"/blocks/*.cs; do
  [ -e "$block" ] || continue
  n=$((n + 1))
  name="$(basename "$block" .cs)"
  echo "== $name: build"
  if ! new_app "$work/apps/$name" yes "$block"; then
    echo "FAILED to build: $name"; failures=$((failures + 1)); continue
  fi
  echo "== $name: run"
  if ! (cd "$root" && timeout 600 dotnet "$work/apps/$name/out/App.dll" > "$work/apps/$name/run.log" 2>&1); then
    cat "$work/apps/$name/run.log"; echo "FAILED to run: $name"; failures=$((failures + 1)); continue
  fi
  tail -n 5 "$work/apps/$name/run.log"
done
[ "$n" -gt 0 ] || { echo "no C# blocks found"; exit 1; }

echo "== an application without a TorchSharp backend"
cat > "$work/nobackend.cs" <<'EOF'
using Jamba.Inference;
using Jamba.Inference.Engine;
try
{
    await using var model = await JambaModelHandle.LoadAsync("models/jamba-moby-tiny");
    Console.WriteLine("loaded without a backend?");
    return 1;
}
catch (JambaNativeLibraryException e)
{
    Console.WriteLine(e.Message);
    return e.Message.Contains("TorchSharp-cpu") ? 0 : 1;
}
EOF
if new_app "$work/apps/nobackend" no "$work/nobackend.cs" && (cd "$root" && timeout 300 dotnet "$work/apps/nobackend/out/App.dll"); then
  echo "ok: the missing backend is named"
else
  echo "FAILED: an app without a backend did not get the library's message"; failures=$((failures + 1))
fi

echo "== $n README blocks, $failures failure(s)"
[ "$failures" -eq 0 ]
