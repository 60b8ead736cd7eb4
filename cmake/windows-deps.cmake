# Dependencies of the Windows build (tools/build-windows), all from Debian: libuv built from
# Debian's source package for mingw-w64 and installed under FAULTLINE_WINDOWS_DEPS; fmt, toml++,
# cxxopts and nlohmann-json as headers copied there from Debian's -dev packages, used header-only
# (the Linux build links Debian's compiled fmt and toml++ instead). The targets carry the names
# the Linux build gets from find_package / pkg-config, so the rest of the build is one.
set(FAULTLINE_WINDOWS_DEPS "" CACHE PATH "prefix holding libuv and the headers for Windows")
if(NOT FAULTLINE_WINDOWS_DEPS)
  message(FATAL_ERROR "the Windows build needs -DFAULTLINE_WINDOWS_DEPS=<prefix>: "
                      "run tools/build-windows")
endif()
set(deps ${FAULTLINE_WINDOWS_DEPS})

add_library(PkgConfig::LIBUV STATIC IMPORTED)
set_target_properties(PkgConfig::LIBUV PROPERTIES
  IMPORTED_LOCATION ${deps}/lib/libuv_a.a
  INTERFACE_INCLUDE_DIRECTORIES ${deps}/include
  INTERFACE_LINK_LIBRARIES "psapi;user32;advapi32;iphlpapi;userenv;ws2_32;dbghelp;ole32;shell32")

add_library(fmt::fmt INTERFACE IMPORTED)
set_target_properties(fmt::fmt PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES ${deps}/include INTERFACE_COMPILE_DEFINITIONS FMT_HEADER_ONLY=1)
add_library(nlohmann_json::nlohmann_json INTERFACE IMPORTED)
set_target_properties(nlohmann_json::nlohmann_json PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES ${deps}/include)
add_library(PkgConfig::TOMLPP INTERFACE IMPORTED)
set_target_properties(PkgConfig::TOMLPP PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES ${deps}/include INTERFACE_COMPILE_DEFINITIONS TOML_HEADER_ONLY=1)

# One file to copy: the C and C++ runtimes and winpthreads linked in.
add_link_options(-static -static-libgcc -static-libstdc++)
# Windows headers: no min/max macros, and Vista+ APIs (libuv needs them too).
add_compile_definitions(NOMINMAX WIN32_LEAN_AND_MEAN _WIN32_WINNT=0x0A00)
add_compile_options(-Wno-restrict) # GCC 12 false positive in std::string at -O3 (mingw libstdc++)
