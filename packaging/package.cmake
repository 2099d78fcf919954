# Install rules and the Debian package (CPack's DEB generator; scripts/package.sh runs it).
# CPack rather than debhelper: it needs nothing beyond cmake and dpkg-deb, which every build host
# here has, and it reuses the build's own targets (no debian/rules to keep in step with CMake).
# The package's version is this project's VERSION (top-level CMakeLists.txt).
include(GNUInstallDirs)

install(TARGETS understudy RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
# Absolute: /etc and /lib are not under the /usr prefix. Debian 12 ships units in /lib.
install(FILES ${CMAKE_CURRENT_LIST_DIR}/understudy.toml DESTINATION /etc/understudy
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
install(FILES ${CMAKE_CURRENT_LIST_DIR}/understudy.service DESTINATION /lib/systemd/system)

# Man pages are plain roff (no generator to install); Debian wants them compressed.
set(UNDERSTUDY_MAN_PAGES understudy.8 understudy.toml.5)
set(UNDERSTUDY_MAN_OUTPUTS)
foreach(page IN LISTS UNDERSTUDY_MAN_PAGES)
  set(out ${CMAKE_CURRENT_BINARY_DIR}/man/${page}.gz)
  add_custom_command(OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_CURRENT_BINARY_DIR}/man
    COMMAND gzip -9nc ${CMAKE_CURRENT_LIST_DIR}/${page} > ${out}
    DEPENDS ${CMAKE_CURRENT_LIST_DIR}/${page} VERBATIM)
  list(APPEND UNDERSTUDY_MAN_OUTPUTS ${out})
  string(REGEX REPLACE "^.*\\.([0-9])$" "\\1" section ${page})
  install(FILES ${out} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
endforeach()
add_custom_target(man_pages ALL DEPENDS ${UNDERSTUDY_MAN_OUTPUTS})

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME understudy)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_PACKAGE_CONTACT "Understudy maintainers <understudy@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "client-transparent failover of in-flight HTTP requests between two hosts")
# The long description; CPack puts the summary above it and indents it.
set(CPACK_PACKAGE_DESCRIPTION
    "Understudy runs on two Linux hosts beside an unmodified web server and makes
a crash of either host invisible to unmodified TCP clients: every request
already sent gets one complete reply on the same connection.")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # understudy_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)  # dpkg-shlibdeps (dpkg-dev) finds the library packages
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "nginx | httpd, ethtool")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_CURRENT_LIST_DIR}/debian/conffiles ${CMAKE_CURRENT_LIST_DIR}/debian/postinst
    ${CMAKE_CURRENT_LIST_DIR}/debian/prerm ${CMAKE_CURRENT_LIST_DIR}/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
