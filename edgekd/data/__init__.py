"""Image data: loading (`loading`: ImageFolders and the embedded default), which files are images
(`files`), the checks every file gets (`images`) and the one rule that makes them RGB (`rgb`; light:
`edgekd predict` imports it without torch)."""
